package drawstate

import (
	"context"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The kinds of outcome events (docs/protocol.md §7.9).
const (
	// EventComplete, EventRollback and EventExpire are terminal: every
	// operation ever saved ends in exactly one of them.
	EventComplete = "complete"
	EventRollback = "rollback"
	EventExpire   = "expire"
	// EventRollbackSuperseded is a note, not an ending: a deferred rollback found
	// the operation already ended another way. Nothing is owed.
	EventRollbackSuperseded = "rollback-superseded"
)

// DefaultOutcomesBlock is how long each read of EachOutcome waits for a new
// event when ConsumeOptions.Block is 0 (the Python client's iter_outcomes default).
const DefaultOutcomesBlock = time.Second

// contextEndGrace: a retryable failure of a read this close to ctx's deadline
// is ctx ending (the daemon answers a few ms before a deadline it cannot meet).
const contextEndGrace = 100 * time.Millisecond

// OutcomeEvent is how one operation ended (or a note about it), as the outcome
// stream records it; Outcomes and Audit return them. An event may exceptionally
// come twice, identical but for ID: key refunds by OperationID.
type OutcomeEvent struct {
	ID          string `msgpack:"id"`    // the stream entry id "<ms>-<seq>", what Ack takes
	Event       string `msgpack:"event"` // EventComplete, EventRollback, EventExpire or EventRollbackSuperseded
	LockKey     string `msgpack:"lock_key"`
	OperationID string `msgpack:"operation_id"`
	Time        int64  `msgpack:"time"`   // unix seconds when it ended, by Redis's clock
	Reason      string `msgpack:"reason"` // the rollback's reason, "ttl expired", or ""
	// Existed says whether a state was stored when it ended (older daemons sent 0/1; both read here).
	Existed bool `msgpack:"-"`
	// RefundedByCaller: a rollback caller was told Final, and pays; a refund worker skips it.
	RefundedByCaller bool `msgpack:"-"`
	// Deferred: a rollback applied after it was answered "deferred".
	Deferred bool `msgpack:"-"`
	// ClosedBy is set on EventRollbackSuperseded only: how the operation had ended.
	ClosedBy string `msgpack:"closed_by"`
	// The parts of the state it ended with, when one was stored and could be
	// read (TotalCount is then at least 1).
	CompletedCount int               `msgpack:"completed_count"`
	TotalCount     int               `msgpack:"total_count"`
	Errors         int               `msgpack:"errors"`       // how many draws failed
	FailedDraws    []int             `msgpack:"failed_draws"` // their 1-based indexes
	Results        []int64           `msgpack:"results"`
	PrizeResults   []Prize           `msgpack:"prize_results"`
	Metadata       map[string]string `msgpack:"metadata"`
	// CorruptedState is, instead of the state's parts, the raw text of a stored
	// state that could not be read, for a manual refund.
	CorruptedState string `msgpack:"corrupted_state"`
}

// Event is OutcomeEvent's former name.
//
// Deprecated: use OutcomeEvent.
type Event = OutcomeEvent

// Terminal reports whether the event is an operation's one ending (complete, rollback, expire).
func (ev OutcomeEvent) Terminal() bool {
	return ev.Event == EventComplete || ev.Event == EventRollback || ev.Event == EventExpire
}

// UngrantedCount is the number of draws paid for that granted nothing (failed,
// or never made): what a refund covers.
func (ev OutcomeEvent) UngrantedCount() int {
	if n := ev.TotalCount - ev.CompletedCount; n > 0 {
		return n
	}
	return 0
}

// RefundOwed reports whether a refund worker pays this event: an ending of a
// stored operation with draws that granted nothing, whose refund no rollback
// caller was told to pay. A complete owes one too when draws failed (or it was
// completed early); a rollback whose caller got Final owes nothing here; a
// note (EventRollbackSuperseded) and an ending with nothing stored owe nothing.
func (ev OutcomeEvent) RefundOwed() bool {
	return ev.Terminal() && ev.Existed && !ev.RefundedByCaller && ev.UngrantedCount() > 0
}

// DecodeMsgpack reads an event; its flags may be bools or (older daemons) ints.
func (ev *OutcomeEvent) DecodeMsgpack(d *msgpack.Decoder) error {
	type plain OutcomeEvent // no DecodeMsgpack method: decoded field by field
	var w struct {
		plain
		Existed          wireBool `msgpack:"existed"`
		RefundedByCaller wireBool `msgpack:"refunded_by_caller"`
		Deferred         wireBool `msgpack:"deferred"`
	}
	if err := d.Decode(&w); err != nil {
		return err
	}
	*ev = OutcomeEvent(w.plain)
	ev.Existed, ev.RefundedByCaller, ev.Deferred = bool(w.Existed), bool(w.RefundedByCaller), bool(w.Deferred)
	return nil
}

// EncodeMsgpack writes the event as the daemon does (daemon/drawstated/outcomes.py
// event_item): the stream's fields in their order, closed_by only when set, the
// state's parts only when a state was read (empty lists and metadata as empty,
// not nil), corrupted_state only when set.
func (ev OutcomeEvent) EncodeMsgpack(e *msgpack.Encoder) error {
	type field struct {
		key   string
		value any
	}
	fields := []field{
		{"id", ev.ID}, {"event", ev.Event}, {"lock_key", ev.LockKey}, {"operation_id", ev.OperationID},
		{"time", ev.Time}, {"reason", ev.Reason}, {"existed", ev.Existed},
		{"refunded_by_caller", ev.RefundedByCaller}, {"deferred", ev.Deferred},
	}
	if ev.ClosedBy != "" {
		fields = append(fields, field{"closed_by", ev.ClosedBy})
	}
	if ev.TotalCount > 0 {
		fields = append(fields,
			field{"completed_count", ev.CompletedCount}, field{"total_count", ev.TotalCount},
			field{"errors", ev.Errors}, field{"failed_draws", append([]int{}, ev.FailedDraws...)},
			field{"results", append([]int64{}, ev.Results...)},
			field{"prize_results", append([]Prize{}, ev.PrizeResults...)},
			field{"metadata", nonNilMap(ev.Metadata)})
	}
	if ev.CorruptedState != "" {
		fields = append(fields, field{"corrupted_state", ev.CorruptedState})
	}
	if err := e.EncodeMapLen(len(fields)); err != nil {
		return err
	}
	for _, f := range fields {
		if err := e.EncodeString(f.key); err != nil {
			return err
		}
		if err := e.Encode(f.value); err != nil {
			return err
		}
	}
	return nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// AuditOptions select a page of audit.
type AuditOptions struct {
	LockKey string // "": every lock key
	Since   int64  // unix seconds; 0: from the oldest event kept (ignored with Cursor)
	Limit   int    // 0: the daemon's default (100)
	Cursor  string // the previous page's Cursor
}

// Audit returns one page of the outcome stream as history, oldest first,
// without a consumer group and without acknowledging anything.
func (c *Client) Audit(ctx context.Context, opts AuditOptions) (AuditPage, error) {
	req := &auditRequest{LockKey: opts.LockKey, Limit: opts.Limit, Cursor: opts.Cursor}
	if opts.Since > 0 && opts.Cursor == "" {
		req.Since = Expect(opts.Since)
	}
	var out auditReply
	if err := c.call(ctx, "audit", req, &out); err != nil {
		return AuditPage{}, err
	}
	return AuditPage{Items: out.Items, Cursor: deref(out.Cursor)}, nil
}

// OutcomesOptions name a consumer of the outcome stream.
type OutcomesOptions struct {
	Group     string        // consumer group, 1-64 of [A-Za-z0-9_.:-]
	Consumer  string        // this consumer's name, same format
	Limit     int           // 0: the daemon's default (100)
	Block     time.Duration // wait this long for an event when none is due (bounded by the deadline)
	ClaimIdle time.Duration // also take over entries other consumers left unacknowledged this long
}

// Outcomes returns the next events for this consumer, oldest first; entries it
// got and did not Ack come again first (at least once delivery).
func (c *Client) Outcomes(ctx context.Context, opts OutcomesOptions) ([]OutcomeEvent, error) {
	if _, ok := ctx.Deadline(); !ok && opts.Block > 0 {
		var cancel context.CancelFunc // the default timeout covers the call, not the wait for events
		ctx, cancel = context.WithTimeout(ctx, c.timeout+opts.Block)
		defer cancel()
	}
	req := &outcomesRequest{Group: opts.Group, Consumer: opts.Consumer, Limit: opts.Limit,
		ClaimIdleMs: opts.ClaimIdle.Milliseconds()}
	if opts.Block > 0 {
		req.BlockMs = Expect(opts.Block.Milliseconds())
	}
	var out outcomesReply
	if err := c.call(ctx, "outcomes", req, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// Ack acknowledges handled outcome events of group; it returns how many were pending.
func (c *Client) Ack(ctx context.Context, group string, ids []string) (int64, error) {
	var out ackReply
	err := c.call(ctx, "ack", &ackRequest{Group: group, IDs: ids}, &out)
	return out.Acked, err
}

// ConsumeOptions drive EachOutcome.
type ConsumeOptions struct {
	OutcomesOptions // Block 0 means DefaultOutcomesBlock here
	// StopWhenIdle makes EachOutcome return nil once a read that waited Block brings nothing.
	StopWhenIdle bool
}

// EachOutcome calls handle for every event delivered to this consumer, in
// order, and acknowledges an event only after handle returned nil for it. An
// error from handle stops the loop and is returned, the event unacknowledged:
// it comes again (to this consumer's next read, or to another after its
// ClaimIdle), as it does after a crash, so handle must be idempotent (key
// refunds by OperationID). A refund worker pays the events whose RefundOwed is true.
//
// It runs until ctx ends (it returns ctx.Err(); a read the daemon gave up on
// right before ctx's deadline counts as that), a call fails (the error; a
// worker logs it and calls EachOutcome again), or, with StopWhenIdle, a read
// brings nothing (nil). Each read is bounded by the client's timeout plus Block,
// and each ack by the timeout, whatever ctx's deadline.
func (c *Client) EachOutcome(ctx context.Context, opts ConsumeOptions, handle func(OutcomeEvent) error) error {
	read := opts.OutcomesOptions
	if read.Block <= 0 {
		read.Block = DefaultOutcomesBlock
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		events, err := c.boundedOutcomes(ctx, read)
		if err != nil {
			if deadline, ok := ctx.Deadline(); ok && IsRetryable(err) && time.Until(deadline) < contextEndGrace {
				<-ctx.Done() // the daemon answers just before a deadline it cannot meet: ctx's own
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if len(events) == 0 && opts.StopWhenIdle {
			return nil
		}
		for _, event := range events {
			if err := handle(event); err != nil {
				return err
			}
			if err := c.boundedAck(ctx, read.Group, event.ID); err != nil {
				return err
			}
		}
	}
}

func (c *Client) boundedOutcomes(ctx context.Context, read OutcomesOptions) ([]OutcomeEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout+read.Block)
	defer cancel()
	return c.Outcomes(ctx, read)
}

func (c *Client) boundedAck(ctx context.Context, group, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.Ack(ctx, group, []string{id})
	return err
}
