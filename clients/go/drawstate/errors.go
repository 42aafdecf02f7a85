package drawstate

import (
	"errors"
	"fmt"
)

// Wire error codes (docs/protocol.md §9), plus the client-side CodeSidecarUnavailable and CodeSidecarTimeout.
const (
	CodeInvalidRequest     = "invalid_request"
	CodeDrawStateCorrupted = "draw_state_corrupted"
	CodeVersionConflict    = "version_conflict"
	CodeStaleState         = "stale_state"
	CodeOperationClosed    = "operation_closed"
	CodeNotFound           = "not_found"
	CodeRedisUnavailable   = "redis_unavailable"
	CodeDeadlineExceeded   = "deadline_exceeded"
	CodeOverloaded         = "overloaded"
	CodeDurabilityNotMet   = "durability_not_met"
	CodeOutcomeUnknown     = "outcome_unknown"
	// CodeBaseUnknown answers a save that sent only its new draws (append) to a
	// daemon that does not hold the state they extend; this client always sends
	// whole states, so it never gets it.
	CodeBaseUnknown   = "base_unknown"
	CodeFrameTooLarge = "frame_too_large"
	CodeInternal      = "internal"
	// CodeSidecarUnavailable never appears on the wire: the daemon could not be
	// reached (no socket, connection refused, an unsafe default socket
	// directory), so nothing was sent.
	CodeSidecarUnavailable = "sidecar_unavailable"
	// CodeSidecarTimeout never appears on the wire: the request went out, but no
	// reply came within the deadline, or the connection broke first, so it MAY
	// have taken effect. Resend it unchanged (same token) to learn the outcome.
	CodeSidecarTimeout = "sidecar_timeout"
)

// retryable says, per known code, whether sending the same request again may succeed.
var retryable = map[string]bool{
	CodeInvalidRequest:     false,
	CodeDrawStateCorrupted: false,
	CodeVersionConflict:    false,
	CodeStaleState:         false,
	CodeOperationClosed:    false,
	CodeNotFound:           false,
	CodeRedisUnavailable:   true,
	CodeDeadlineExceeded:   true,
	CodeOverloaded:         true,
	CodeDurabilityNotMet:   true,
	CodeOutcomeUnknown:     true,
	CodeBaseUnknown:        false,
	CodeFrameTooLarge:      false,
	CodeInternal:           false,
	CodeSidecarUnavailable: true,
	CodeSidecarTimeout:     true,
}

// parentCode makes a code also match a broader sentinel, as the Python client's
// SidecarTimeout subclasses SidecarUnavailable: errors.Is(err, ErrSidecarUnavailable)
// holds for both, errors.Is(err, ErrSidecarTimeout) only for the request that went out.
var parentCode = map[string]string{CodeSidecarTimeout: CodeSidecarUnavailable}

// Error is every failure the daemon reports, and the client's own
// sidecar_unavailable and sidecar_timeout. Match it with errors.Is against the sentinels below
// (the code decides), or errors.As to read Details.
type Error struct {
	// Code is the wire code (one of the Code constants, or a newer one).
	Code string
	// Message is human-readable and may change; branch on Code.
	Message string
	// Retryable says whether the same request (same save token) may succeed if sent again.
	Retryable bool
	// Details holds the error's extra fields: stored_version, field, closed_by, version, replicas.
	Details map[string]any
	// Err is the cause, for errors the client makes (a socket error, context.DeadlineExceeded).
	Err error
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "drawstate: " + e.Code
	}
	return fmt.Sprintf("drawstate: %s: %s", e.Code, e.Message)
}

// Unwrap returns the cause of a client-side error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's code, or of the code it refines
// (ErrSidecarUnavailable for a sidecar_timeout).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || !t.sentinel() {
		return false
	}
	for code := e.Code; code != ""; code = parentCode[code] {
		if t.Code == code {
			return true
		}
	}
	return false
}

func (e *Error) sentinel() bool { return e.Message == "" && e.Details == nil && e.Err == nil }

// StoredVersion is version_conflict's detail: the version stored now (0: none).
func (e *Error) StoredVersion() (int64, bool) { return e.intDetail("stored_version") }

// ClosedBy is operation_closed's detail: "rollback", "complete" or "expire".
func (e *Error) ClosedBy() string { return e.stringDetail("closed_by") }

// Field is stale_state's detail: the field that would move backwards.
func (e *Error) Field() string { return e.stringDetail("field") }

func (e *Error) intDetail(key string) (int64, bool) {
	v, ok := e.Details[key].(int64)
	return v, ok
}

func (e *Error) stringDetail(key string) string {
	s, _ := e.Details[key].(string)
	return s
}

// newError builds the error of a known code, retryable as that code is.
func newError(code, message string, cause error) *Error {
	return &Error{Code: code, Message: message, Retryable: retryable[code], Err: cause}
}

func sentinel(code string) *Error { return &Error{Code: code, Retryable: retryable[code]} }

// Sentinels: errors.Is(err, ErrVersionConflict) is true for any *Error of that code.
var (
	ErrInvalidRequest     = sentinel(CodeInvalidRequest)
	ErrDrawStateCorrupted = sentinel(CodeDrawStateCorrupted)
	ErrVersionConflict    = sentinel(CodeVersionConflict)
	ErrStaleState         = sentinel(CodeStaleState)
	ErrOperationClosed    = sentinel(CodeOperationClosed)
	ErrNotFound           = sentinel(CodeNotFound)
	ErrRedisUnavailable   = sentinel(CodeRedisUnavailable)
	ErrDeadlineExceeded   = sentinel(CodeDeadlineExceeded)
	ErrOverloaded         = sentinel(CodeOverloaded)
	ErrDurabilityNotMet   = sentinel(CodeDurabilityNotMet)
	// ErrOutcomeUnknown: whether the request took effect is not known. The daemon
	// answers it when a rollback was applied but who pays could not be confirmed in
	// time; MultiDraw returns it when a save or rollback may have been applied and
	// resending it gave no definite answer within the resend deadline. Resend it as
	// it was (same token) to learn the answer; until then neither grant nor refund.
	ErrOutcomeUnknown     = sentinel(CodeOutcomeUnknown)
	ErrBaseUnknown        = sentinel(CodeBaseUnknown)
	ErrFrameTooLarge      = sentinel(CodeFrameTooLarge)
	ErrInternal           = sentinel(CodeInternal)
	ErrSidecarUnavailable = sentinel(CodeSidecarUnavailable)
	// ErrSidecarTimeout also matches ErrSidecarUnavailable; where the context's
	// deadline ended the wait it matches context.DeadlineExceeded too.
	ErrSidecarTimeout = sentinel(CodeSidecarTimeout)
)

// ErrClientClosed is returned by calls on a Client after Close.
var ErrClientClosed = errors.New("drawstate: client closed")

// IsRetryable reports whether err is a drawstate error that a resend of the
// same request may cure (for a save: with the same token).
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

// errorFromWire builds the *Error of an error map from a reply. An unknown
// code keeps its name and is retryable only if the daemon says so.
func errorFromWire(w *wireError) *Error {
	if w == nil {
		return newError(CodeInternal, "reply has ok false and no error", nil)
	}
	e := &Error{Code: w.Code, Message: w.Message, Retryable: w.Retryable}
	if known, ok := retryable[w.Code]; ok {
		e.Retryable = known
	}
	if w.Code == "" {
		e.Code = CodeInternal
	}
	if len(w.Details) > 0 {
		e.Details = make(map[string]any, len(w.Details))
		for _, d := range w.Details {
			e.Details[d.Key] = d.Value
		}
	}
	return e
}
