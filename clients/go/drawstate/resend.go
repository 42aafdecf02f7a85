package drawstate

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"time"
)

// Resending one request until the daemon answers it definitely (client/drawstate/resend.py).
//
// A request that failed with a retryable error may or may not have taken
// effect: a save whose reply was lost may be in Redis. Sending it again
// unchanged (the same token) is always safe, since the daemon answers a repeat
// as it answered the first. So MultiDraw resends with jittered back-off until
// an answer is definite or its resend deadline passes; then, if any attempt may
// have reached the daemon, the outcome is unknown (ErrOutcomeUnknown), else it
// surely did not happen (the last error).
const (
	// DefaultResendDeadline is how long a save or rollback is resent, with the
	// same token, while its answer is retryable (SessionOptions.ResendDeadline).
	DefaultResendDeadline = 5 * time.Second
	// RetryBackoff is the first pause between resends (doubled each time, with jitter).
	RetryBackoff = 50 * time.Millisecond
	// RetryBackoffMax caps the pause between resends.
	RetryBackoffMax = time.Second
)

// maybeApplied reports whether a failed request may still have taken effect:
// every failure but "could not connect, nothing sent" and "overloaded" (the
// daemon refused the connection before reading the request).
func maybeApplied(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code != CodeSidecarUnavailable && e.Code != CodeOverloaded
}

// resend runs call until it answers definitely: nil, or an error that is not
// retryable (an answer, returned at once). call must send the same request
// each time (the same token). Past the deadline, or once ctx ends, it returns
// ErrOutcomeUnknown if any attempt may have taken effect, else the last error.
func resend(ctx context.Context, deadline time.Duration, what string, call func() error) error {
	giveUp := time.Now().Add(deadline)
	maybe := false
	backoff := RetryBackoff
	for {
		err := call()
		if err == nil || !IsRetryable(err) {
			return err
		}
		maybe = maybe || maybeApplied(err)
		pause := backoff
		if pause > RetryBackoffMax {
			pause = RetryBackoffMax
		}
		pause = time.Duration(float64(pause) * (0.5 + rand.Float64())) // jitter, not crypto
		if time.Now().Add(pause).After(giveUp) {
			return undecided(err, maybe, fmt.Sprintf("%s within %s", what, deadline))
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return undecided(err, maybe, fmt.Sprintf("%s before its context ended (%v)", what, ctx.Err()))
		case <-timer.C:
		}
		backoff *= 2
	}
}

// undecided is resend's answer when no definite one came: ErrOutcomeUnknown
// when an attempt may have been applied, else the last error itself. The
// ErrOutcomeUnknown does not wrap the last error, so that errors.Is(err,
// ErrSidecarUnavailable) never takes a request in doubt for one never sent;
// its message names it, and its Details are the last error's.
func undecided(last error, maybe bool, what string) error {
	if !maybe || errors.Is(last, ErrOutcomeUnknown) {
		return last
	}
	unknown := newError(CodeOutcomeUnknown,
		fmt.Sprintf("no definite answer for %s (%v); it may have taken effect: resend it", what, last), nil)
	var e *Error
	if errors.As(last, &e) {
		unknown.Details = e.Details
	}
	return unknown
}
