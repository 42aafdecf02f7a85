package drawstate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Bounds the daemon puts on what a session sends.
const (
	// MaxErrorMessageChars and MaxReasonChars are the daemon's bounds on a failed draw's message and a rollback's reason.
	MaxErrorMessageChars = 1024
	MaxReasonChars       = 512
)

// SessionOptions apply to every save and rollback of a MultiDraw.
type SessionOptions struct {
	TTL        time.Duration // how long the state outlives each save; 0: the daemon's default
	Durability string        // "ack" or "replicated"; "": the daemon's default
	// ResendDeadline is how long a save or rollback is resent, with the same
	// token, while its answer is retryable; 0: DefaultResendDeadline. Past it
	// the call returns ErrOutcomeUnknown when it may have taken effect, else
	// the last error. The call's context may end it sooner.
	ResendDeadline time.Duration
	// RollbackToken is the token this session's rollback goes out with; "": a
	// new one. A process that may die between a rollback and paying its refund
	// stores MultiDraw.RollbackToken first and, after a restart, resumes the
	// operation with it (NoClaim) and rolls back again: the same answer comes back.
	RollbackToken string
}

// StartOptions make a new operation.
type StartOptions struct {
	SessionOptions
	// Metadata holds what a refund needs: user id, banner, price paid.
	Metadata map[string]string
	// OperationID names the operation; "": a new one (NewOperationID).
	OperationID string
}

// ResumeOptions load an interrupted operation.
type ResumeOptions struct {
	SessionOptions
	// NoClaim only loads the operation (to inspect it); call Claim before drawing.
	NoClaim bool
}

// Refund is what a rolled-back operation had granted, and whether this caller pays its refund.
type Refund struct {
	// State is what the daemon removed (the authority on what was granted), or,
	// when Redis held nothing any more or the rollback was deferred, the state
	// this session saved last.
	State DrawState
	// Cleanup is "done" or "deferred".
	Cleanup string
	// Final true: this session rolled the operation back and pays the refund,
	// now, from State (idempotently, keyed by operation id). Final false: do not
	// refund here: the rollback was deferred (Redis unreachable; the daemon
	// applies it later) or its refund was given to the outcome stream, whose
	// event a refund worker pays; State is then for display only.
	Final bool
	// Existed says whether a state was stored when the rollback was applied
	// (false when nothing was stored, and while deferred).
	Existed bool
	// Token is the token the rollback went out with.
	Token string
}

// GrantedCount is the number of draws that granted something.
func (r Refund) GrantedCount() int { return r.State.CompletedCount }

// UngrantedCount is the number of draws paid for that granted nothing: never made, or failed.
func (r Refund) UngrantedCount() int { return r.State.TotalCount - r.State.CompletedCount }

// MultiDraw drives one multi-draw operation for one game process.
//
// Make one with StartMultiDraw (a new operation) or ResumeMultiDraw (an
// interrupted one), record each draw and grant it only once Record returned:
// a draw is safe only when it is saved. Finish with Complete (every draw made)
// or Rollback (remove it and get back what was granted, for the refund).
//
// Ownership: a session may write only while nobody else has saved the
// operation since it last did. Resume claims the operation by saving it
// unchanged (with a fresh last_update_time) with the version it loaded; of two
// resumers that loaded the same version, exactly one claim succeeds and the
// other gets ErrVersionConflict. A later claim takes the operation over from
// its previous owner, whose next save gets ErrVersionConflict. A session that
// got ErrVersionConflict or ErrOperationClosed has lost the operation and
// refuses every further record, complete and rollback (resume it anew).
//
// Saves and rollbacks are resent with the same token while their answer is
// retryable, up to SessionOptions.ResendDeadline; then ErrOutcomeUnknown if
// they may have taken effect (see Record and Rollback), else the last error.
//
// A MultiDraw is one flow of one process: it is not safe for concurrent use.
type MultiDraw struct {
	client  *Client
	opts    SessionOptions
	state   DrawState // as last saved, version included
	closed  string    // "complete" or "rollback" once this session closed the operation
	refund  *Refund
	lost    *Error // why another process owns or closed the operation
	unsaved *unsavedSave
	// rollbackToken is this session's one rollback token: a repeat learns the same outcome.
	rollbackToken string
	// rollbackInDoubt: an attempt of this rollback may have reached Redis without its answer
	// reaching us, so a later "deferred" answer cannot say who pays; only a "done" one can.
	rollbackInDoubt bool
}

// unsavedSave is the last save that failed with a retryable error: it may have
// been applied, so the same draws are sent again as they were, with its token.
type unsavedSave struct {
	state DrawState
	token string
}

func newSession(client *Client, state DrawState, opts SessionOptions) *MultiDraw {
	if opts.ResendDeadline <= 0 {
		opts.ResendDeadline = DefaultResendDeadline
	}
	token := opts.RollbackToken
	if token == "" {
		token = NewToken()
	}
	// A stored token may have been sent before a crash: its answer is in doubt from the start.
	return &MultiDraw{client: client, opts: opts, state: state.Clone(), rollbackToken: token,
		rollbackInDoubt: opts.RollbackToken != ""}
}

// StartMultiDraw saves the initial state (no draws yet) of a new operation,
// before the first draw. The save is create-only: an existing operation id
// gets ErrVersionConflict.
func StartMultiDraw(ctx context.Context, client *Client, lockKey string, total int, opts StartOptions) (*MultiDraw, error) {
	now := time.Now()
	state := DrawState{LockKey: lockKey, OperationID: opts.OperationID, TotalCount: total,
		StartTime: now.Unix(), LastUpdateTime: now.Unix(), Metadata: opts.Metadata}
	if state.OperationID == "" {
		state.OperationID = NewOperationID(now)
	}
	session := newSession(client, state, opts.SessionOptions)
	if err := session.save(ctx, state.Clone(), Expect(0)); err != nil {
		return nil, err
	}
	return session, nil
}

// ResumeMultiDraw loads an interrupted operation (the newest live one of
// lockKey when operationID is ""). It returns nil and no error when there is
// none (never started, completed, rolled back or expired). Unless NoClaim, the
// operation is claimed before this returns: ErrVersionConflict when another
// process saved it in between, so at most one of several resumers gets a session.
func ResumeMultiDraw(ctx context.Context, client *Client, lockKey, operationID string, opts ResumeOptions) (*MultiDraw, error) {
	state, err := client.Load(ctx, lockKey, operationID)
	if err != nil || state == nil {
		return nil, err
	}
	session := newSession(client, *state, opts.SessionOptions)
	if !opts.NoClaim {
		if _, err := session.Claim(ctx); err != nil {
			return nil, err
		}
	}
	return session, nil
}

// Claim takes the operation: it saves it unchanged with the version last seen
// and returns the new version. ErrVersionConflict if anyone saved it since,
// ErrOperationClosed if it was closed.
func (m *MultiDraw) Claim(ctx context.Context) (int64, error) {
	if err := m.usable(); err != nil {
		return 0, err
	}
	candidate := m.state.Clone()
	candidate.LastUpdateTime = m.now()
	if err := m.save(ctx, candidate, nil); err != nil {
		return 0, err
	}
	return m.state.Version, nil
}

// RecordResult saves a range-draw result as the next draw; it returns the draw's 1-based index.
func (m *MultiDraw) RecordResult(ctx context.Context, result int64) (int, error) {
	return m.record(ctx, func(s *DrawState) { s.Results = append(s.Results, result); s.CompletedCount++ })
}

// RecordPrize saves a prize-draw result as the next draw; it returns the draw's 1-based index.
func (m *MultiDraw) RecordPrize(ctx context.Context, prize Prize) (int, error) {
	return m.record(ctx, func(s *DrawState) { s.PrizeResults = append(s.PrizeResults, prize); s.CompletedCount++ })
}

// RecordFailure saves a failed draw: it counts against TotalCount and grants nothing.
func (m *MultiDraw) RecordFailure(ctx context.Context, cause error) (int, error) {
	message := "draw failed"
	if cause != nil {
		message = cause.Error()
	}
	if runes := []rune(message); len(runes) > MaxErrorMessageChars {
		message = string(runes[:MaxErrorMessageChars])
	}
	now := m.now()
	return m.record(ctx, func(s *DrawState) {
		s.Errors = append(s.Errors, DrawError{DrawIndex: s.NextDrawIndex(), ErrorMessage: message, Timestamp: now})
	})
}

// record saves the next draw. The save is resent with the same token while
// its answer is retryable, up to the resend deadline. If no definite answer
// comes: ErrOutcomeUnknown when the save may have been applied (the draw is in
// doubt: do not grant it now), else the error (the draw is not recorded).
// Either way, record the same draw again (the same save is resent, so it
// cannot apply twice), or stop and leave the operation to ResumeMultiDraw,
// where every result in the state is owed to the player: grant idempotently,
// keyed by (operation id, draw index).
func (m *MultiDraw) record(ctx context.Context, add func(*DrawState)) (int, error) {
	if err := m.usable(); err != nil {
		return 0, err
	}
	if m.state.Finished() {
		return 0, fmt.Errorf("drawstate: all %d draws of %s are recorded", m.state.TotalCount, m.state.OperationID)
	}
	candidate := m.state.Clone()
	index := candidate.NextDrawIndex()
	add(&candidate)
	candidate.LastUpdateTime = m.now()
	if err := m.save(ctx, candidate, nil); err != nil {
		return 0, err
	}
	return index, nil
}

// Complete removes the finished operation and returns its final state
// (everything granted). It refuses while draws remain, unless allowPartial (an
// unfinished operation is normally rolled back, so the rest is refunded).
func (m *MultiDraw) Complete(ctx context.Context, allowPartial bool) (DrawState, error) {
	if m.closed == "complete" {
		return m.State(), nil
	}
	if err := m.usable(); err != nil {
		return DrawState{}, err
	}
	if !m.state.Finished() && !allowPartial {
		return DrawState{}, fmt.Errorf("drawstate: %d of %d draws of %s are still to make; roll it back, or allow partial",
			m.Remaining(), m.state.TotalCount, m.state.OperationID)
	}
	if _, err := m.client.Complete(ctx, m.state.LockKey, m.state.OperationID); err != nil {
		return DrawState{}, err
	}
	m.closed = "complete"
	return m.State(), nil
}

// Rollback removes the operation and returns what it had granted and who
// refunds it (Refund.Final). Every call of one session sends the same token
// (RollbackToken), resent while the answer is retryable, up to the resend
// deadline; with no definite answer by then, ErrOutcomeUnknown: call Rollback
// again later (same token, same answer), and refund nothing meanwhile. Once it
// succeeded, later calls return the same Refund.
func (m *MultiDraw) Rollback(ctx context.Context, reason string) (Refund, error) {
	if m.refund != nil {
		return *m.refund, nil
	}
	if err := m.usable(); err != nil {
		return Refund{}, err
	}
	if runes := []rune(reason); len(runes) > MaxReasonChars {
		reason = string(runes[:MaxReasonChars])
	}
	var result RollbackResult
	err := resend(ctx, m.opts.ResendDeadline, "the rollback of operation "+m.state.OperationID, func() error {
		var err error
		result, err = m.client.RollbackState(ctx, &m.state, RollbackOptions{Reason: reason, Token: m.rollbackToken})
		if err != nil {
			m.rollbackInDoubt = m.rollbackInDoubt || maybeApplied(err)
			return err
		}
		return m.judgeRollback(result)
	})
	if err != nil {
		return Refund{}, err
	}
	// The state Redis held is the authority; when none was stored, or the rollback is
	// deferred, what this session saved last is what it knows was granted.
	removed := m.State()
	if result.State != nil {
		removed = *result.State
	}
	m.closed = "rollback"
	m.refund = &Refund{State: removed, Cleanup: result.Cleanup, Final: result.Final, Existed: result.Existed,
		Token: m.rollbackToken}
	return *m.refund, nil
}

// judgeRollback says whether this session may act on a rollback answer (docs/recovery.md §4):
//   - "deferred" tells its caller not to refund for a first attempt only: after an attempt that
//     may have reached Redis (its answer, maybe "this caller pays", lost), or for an operation this
//     session never stored, only a "done" answer decides: ErrOutcomeUnknown, resend;
//   - "done" with Existed false for an operation this session stored: it ended earlier and the
//     record of how has expired; its outcome event says who refunds: ErrOperationClosed.
func (m *MultiDraw) judgeRollback(result RollbackResult) error {
	if result.Cleanup == "deferred" && (m.rollbackInDoubt || m.state.Version == 0) {
		m.rollbackInDoubt = true
		return newError(CodeOutcomeUnknown, fmt.Sprintf("rollback of %s deferred (Redis unreachable) after an "+
			"attempt that may have been applied, or of an operation never stored: who refunds is not known "+
			"yet; resend the rollback (same token) until it answers done", m.state.OperationID), nil)
	}
	if result.Cleanup == "done" && !result.Existed && m.state.Version > 0 {
		closed := newError(CodeOperationClosed, fmt.Sprintf("operation %s was stored but is gone, and the "+
			"record of how it ended has expired: its outcome event says who refunds; do not refund here",
			m.state.OperationID), nil)
		closed.Details = map[string]any{"closed_by": "unknown"}
		m.lost = closed
		return closed
	}
	return nil
}

// RollbackToken is the token this session's rollback goes out with: store it
// before rolling back if the process may die before paying the refund, and
// resend with it after a restart (SessionOptions.RollbackToken).
func (m *MultiDraw) RollbackToken() string { return m.rollbackToken }

// State is a copy of the state as last saved (version included).
func (m *MultiDraw) State() DrawState { return m.state.Clone() }

// LockKey is the operation's lock key.
func (m *MultiDraw) LockKey() string { return m.state.LockKey }

// OperationID is the operation's id.
func (m *MultiDraw) OperationID() string { return m.state.OperationID }

// Version is the version this session saved last.
func (m *MultiDraw) Version() int64 { return m.state.Version }

// TotalCount is the number of draws the operation was started with.
func (m *MultiDraw) TotalCount() int { return m.state.TotalCount }

// NextDrawIndex is the 1-based index of the draw that comes next (TotalCount+1 once all are recorded).
func (m *MultiDraw) NextDrawIndex() int { return m.state.NextDrawIndex() }

// Remaining is the number of draws still to make.
func (m *MultiDraw) Remaining() int { return m.state.TotalCount - m.state.NextDrawIndex() + 1 }

// Finished reports whether every draw is recorded.
func (m *MultiDraw) Finished() bool { return m.state.Finished() }

// Closed is how this session closed the operation: "complete", "rollback", or "".
func (m *MultiDraw) Closed() string { return m.closed }

// Lost reports whether another process took the operation over or closed it.
func (m *MultiDraw) Lost() bool { return m.lost != nil }

func (m *MultiDraw) usable() error {
	if m.lost != nil {
		return &Error{Code: m.lost.Code, Retryable: false, Details: m.lost.Details, Err: m.lost,
			Message: fmt.Sprintf("this session lost operation %s (%s); resume it to act on it", m.state.OperationID, m.lost.Message)}
	}
	if m.closed != "" {
		return &Error{Code: CodeOperationClosed, Details: map[string]any{"closed_by": m.closed},
			Message: fmt.Sprintf("operation %s was closed by this session (%s)", m.state.OperationID, m.closed)}
	}
	return nil
}

// now is the time to save: never below what is stored (another host's clock may run ahead).
func (m *MultiDraw) now() int64 {
	now := time.Now().Unix()
	if m.state.LastUpdateTime > now {
		now = m.state.LastUpdateTime
	}
	if m.state.StartTime > now {
		now = m.state.StartTime
	}
	return now
}

// save sends candidate over the last saved state with the version last seen
// (or expect), resending retryable failures with one token.
func (m *MultiDraw) save(ctx context.Context, candidate DrawState, expect *int64) error {
	if expect == nil {
		expect = Expect(m.state.Version)
	}
	send, token := m.requestFor(candidate)
	var result SaveResult
	err := resend(ctx, m.opts.ResendDeadline, "a save of operation "+m.state.OperationID, func() error {
		attempt := send.Clone()
		var err error
		result, err = m.client.Save(ctx, &attempt, SaveOptions{Token: token, ExpectVersion: expect,
			TTL: m.opts.TTL, Durability: m.opts.Durability})
		return err
	})
	if err != nil {
		if errors.Is(err, ErrVersionConflict) || errors.Is(err, ErrOperationClosed) {
			var e *Error
			errors.As(err, &e)
			m.lost = e // another process owns or closed it: stop here
		}
		// A retryable failure (ErrOutcomeUnknown too) may still have been applied: keep it, to resend as it is.
		if IsRetryable(err) {
			m.unsaved = &unsavedSave{state: send, token: token}
		} else {
			m.unsaved = nil
		}
		return err
	}
	m.unsaved = nil
	send.Version = result.Version
	m.state = send // its last_update_time differs from candidate's when a failed save was resent
	return nil
}

// requestFor is the state to send and its token: the failed save again if it holds the same draws.
func (m *MultiDraw) requestFor(candidate DrawState) (DrawState, string) {
	candidate.Version = 0
	if m.unsaved != nil && sameDraws(m.unsaved.state, candidate) {
		return m.unsaved.state.Clone(), m.unsaved.token
	}
	return candidate, NewToken()
}

// sameDraws compares two states ignoring last_update_time, version and failed draws' timestamps.
func sameDraws(a, b DrawState) bool {
	if a.LockKey != b.LockKey || a.OperationID != b.OperationID || a.TotalCount != b.TotalCount ||
		a.CompletedCount != b.CompletedCount || a.StartTime != b.StartTime ||
		len(a.Results) != len(b.Results) || len(a.PrizeResults) != len(b.PrizeResults) ||
		len(a.Errors) != len(b.Errors) || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for i := range a.Results {
		if a.Results[i] != b.Results[i] {
			return false
		}
	}
	for i := range a.PrizeResults {
		if a.PrizeResults[i] != b.PrizeResults[i] {
			return false
		}
	}
	for i := range a.Errors {
		// A failed draw recorded again a second later is the same draw: the resend keeps its first timestamp.
		if a.Errors[i].DrawIndex != b.Errors[i].DrawIndex || a.Errors[i].ErrorMessage != b.Errors[i].ErrorMessage {
			return false
		}
	}
	for k, v := range a.Metadata {
		if bv, ok := b.Metadata[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
