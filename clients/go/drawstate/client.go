package drawstate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout bounds a call whose context has no deadline, as the Python client's default.
const DefaultTimeout = time.Second

// Options configure a Client; the zero value means the defaults.
type Options struct {
	// SocketPath is the daemon's socket; "" resolves it with DefaultSocketPath.
	// Only a path nobody chose (neither this nor $DRAWSTATE_SOCKET) has its
	// directory checked before each connect (UnsafeSocketDir).
	SocketPath string
	// Timeout bounds each call whose context has no deadline (default DefaultTimeout).
	Timeout time.Duration
}

// Client talks to one drawstate daemon. It is safe for concurrent use: calls
// share one connection, pipelined, and their replies are matched by id. A call
// whose connection breaks is sent once more on a new connection, since every
// op is safe to repeat (a save carries a token the daemon deduplicates on; a
// rollback or complete leaves a tombstone that answers a repeat the same way).
type Client struct {
	path    string
	timeout time.Duration
	// defaultDir is the socket's directory when the path is the default one: checked before
	// each connect, since another local user could have made it. "" for a chosen path.
	defaultDir string
	ids        atomic.Int64

	mu     sync.Mutex
	conn   *conn
	closed bool
}

// NewClient makes a client; it connects on its first call.
func NewClient(opts Options) *Client {
	c := &Client{path: opts.SocketPath, timeout: opts.Timeout}
	if c.path == "" {
		c.path = os.Getenv(SocketEnv)
	}
	if c.path == "" {
		c.path = implicitSocketPath()
		c.defaultDir = filepath.Dir(c.path)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c
}

// SocketPath is the socket the client connects to.
func (c *Client) SocketPath() string { return c.path }

// Close drops the connection; calls still waiting, and every later call, fail with ErrClientClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		c.conn.close()
		c.conn = nil
	}
	return nil
}

// connection returns the live connection, dialing one if there is none;
// dialed says this call made it.
func (c *Client) connection(ctx context.Context) (cn *conn, dialed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false, ErrClientClosed
	}
	if c.conn != nil && c.conn.broken() == nil {
		return c.conn, false, nil
	}
	if c.defaultDir != "" {
		if problem := UnsafeSocketDir(c.defaultDir); problem != "" {
			return nil, false, newError(CodeSidecarUnavailable,
				fmt.Sprintf("refusing to connect to %s: %s", c.path, problem), nil)
		}
	}
	cn, err = dial(ctx, c.path)
	if err != nil {
		return nil, false, newError(CodeSidecarUnavailable,
			fmt.Sprintf("cannot reach the drawstate daemon at %s: %v", c.path, err), err)
	}
	c.conn = cn
	return cn, true, nil
}

// call sends req and decodes the reply into out. When a connection it did not
// just open breaks under it, it sends req once more on a new one. It fails with
// sidecar_unavailable when no attempt went out (nothing can have happened), and
// with sidecar_timeout when one did but no reply came (it may have taken effect).
func (c *Client) call(ctx context.Context, op string, req request, out reply) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	sent := false // an attempt went out whole: from then on the outcome is unknown
	var cause error
	for attempt := 1; attempt <= 2; attempt++ {
		cn, dialed, err := c.connection(ctx)
		if err != nil {
			if !sent || errors.Is(err, ErrClientClosed) {
				return err
			}
			cause = err
			break
		}
		body, err := c.roundTrip(ctx, cn, op, req, deadline)
		switch {
		case err == nil:
			return c.decode(body, out)
		case errors.Is(err, ErrClientClosed):
			return ErrClientClosed
		case errors.Is(err, errNotSent): // checked first: its cause may be an earlier errBroken
		case errors.Is(err, errBroken):
			sent = true
		default:
			return err
		}
		cause = err
		if dialed || ctx.Err() != nil {
			break
		}
	}
	if sent {
		return newError(CodeSidecarTimeout,
			fmt.Sprintf("connection to %s lost before the reply: %v", c.path, cause), cause)
	}
	return newError(CodeSidecarUnavailable, fmt.Sprintf("could not send to %s: %v", c.path, cause), cause)
}

// roundTrip sends one attempt and waits for its reply. An error wraps errNotSent
// or errBroken, or is the *Error of a request that cannot be encoded or of a
// reply that did not come before ctx ended (sidecar_timeout, wrapping ctx.Err()).
func (c *Client) roundTrip(ctx context.Context, cn *conn, op string, req request, deadline time.Time) ([]byte, error) {
	id := c.ids.Add(1)
	*req.head() = envelope{ID: id, Op: op, DeadlineMs: remainingMs(deadline)}
	frame, err := encodeFrame(req)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, newError(CodeInvalidRequest, fmt.Sprintf("cannot encode the %s request: %v", op, err), err)
	}
	ch, err := cn.send(ctx, id, frame)
	if err != nil {
		return nil, err
	}
	select {
	case res := <-ch:
		return res.body, res.err
	case <-ctx.Done():
		cn.forget(id) // a late reply is dropped by the reader; the connection stays usable
		return nil, newError(CodeSidecarTimeout,
			fmt.Sprintf("no reply from %s before the call ended (%v)", c.path, ctx.Err()), ctx.Err())
	}
}

func (c *Client) decode(body []byte, out reply) error {
	if err := decodeBody(body, out); err != nil {
		return newError(CodeInternal, fmt.Sprintf("malformed reply from the daemon: %v", err), err)
	}
	head := out.head()
	if head.OK {
		return nil
	}
	return errorFromWire(head.Error)
}

// --- ops ---------------------------------------------------------------------------

// Ping asks the daemon whether it and its Redis are up; it does not fail because of Redis.
func (c *Client) Ping(ctx context.Context) (PingResult, error) {
	var out pingReply
	err := c.call(ctx, "ping", &pingRequest{}, &out)
	return PingResult{Redis: out.Redis, Version: out.Version}, err
}

// SaveOptions are save's optional fields.
type SaveOptions struct {
	// Token identifies this logical save: reuse it on every retry of the same
	// save, never for another state. "" makes a fresh one for this call (the
	// client's own resend after a broken connection reuses it).
	Token string
	// ExpectVersion: nil means no check; Expect(0) means create only;
	// Expect(n) means the stored version must be n.
	ExpectVersion *int64
	// TTL is how long the state lives after this save (whole seconds); 0: the daemon's default.
	TTL time.Duration
	// Durability is "ack" or "replicated"; "": the daemon's default.
	Durability string
}

// Expect returns a pointer to v, for SaveOptions.ExpectVersion.
func Expect(v int64) *int64 { return &v }

// ttlSeconds is a TTL on the wire: whole seconds, a fraction rounded up.
func ttlSeconds(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return int64((ttl + time.Second - 1) / time.Second)
}

// Save writes the state of one operation; state.Version is set to the new version.
// The daemon checks every DrawState rule (ErrDrawStateCorrupted).
func (c *Client) Save(ctx context.Context, state *DrawState, opts SaveOptions) (SaveResult, error) {
	send := *state
	send.Version = 0 // set by the daemon: left out of the request
	req := &saveRequest{State: &send, Token: opts.Token, ExpectVersion: opts.ExpectVersion,
		TTLs: ttlSeconds(opts.TTL), Durability: opts.Durability}
	if req.Token == "" {
		req.Token = NewToken()
	}
	var out saveReply
	if err := c.call(ctx, "save", req, &out); err != nil {
		return SaveResult{}, err
	}
	state.Version = out.Version
	return SaveResult{Version: out.Version, TTLs: out.TTLs, Replicas: out.Replicas}, nil
}

// Load returns the state of one operation, or with operationID "" the newest
// live one of lockKey; nil (and no error) when there is none.
func (c *Client) Load(ctx context.Context, lockKey, operationID string) (*DrawState, error) {
	var out loadReply
	if err := c.call(ctx, "load", &loadRequest{LockKey: lockKey, OperationID: operationID}, &out); err != nil {
		return nil, err
	}
	return out.State, nil
}

// RollbackOptions are rollback's optional fields.
type RollbackOptions struct {
	// Reason is recorded in the audit trail (at most 512 chars).
	Reason string
	// Token identifies this logical rollback: a repeat with the same token gets
	// the same Final, State and Existed. "" makes a fresh one for this call.
	Token string
	// RefundBy says who pays the refund: "" or RefundByCaller (this caller, when
	// told Final), or RefundByStream (never this caller: a refund worker pays it
	// from the outcome stream; for operators' sweeps and services that cannot pay
	// inline). Decided once per token: a repeat hears the first decision.
	RefundBy RefundBy
	// ExpectVersion rolls back only if the stored version is this one (Expect(0):
	// nothing stored); otherwise ErrVersionConflict and nothing changes. nil: any
	// version. A guarded rollback is never deferred.
	ExpectVersion *int64
}

// RefundBy is a rollback's refund_by: who pays its refund.
type RefundBy string

// The payers a rollback may name.
const (
	RefundByCaller RefundBy = "caller"
	RefundByStream RefundBy = "stream"
)

// Rollback removes an operation named by its keys and returns what it had granted, for the refund.
func (c *Client) Rollback(ctx context.Context, lockKey, operationID string, opts RollbackOptions) (RollbackResult, error) {
	return c.rollback(ctx, &rollbackRequest{LockKey: lockKey, OperationID: operationID}, opts)
}

// RollbackState removes the operation of state (which the daemon validates in full).
func (c *Client) RollbackState(ctx context.Context, state *DrawState, opts RollbackOptions) (RollbackResult, error) {
	return c.rollback(ctx, &rollbackRequest{State: state}, opts)
}

func (c *Client) rollback(ctx context.Context, req *rollbackRequest, opts RollbackOptions) (RollbackResult, error) {
	req.Reason, req.Token, req.RefundBy, req.ExpectVersion = opts.Reason, opts.Token, opts.RefundBy, opts.ExpectVersion
	if req.Token == "" {
		req.Token = NewToken()
	}
	var out rollbackReply
	if err := c.call(ctx, "rollback", req, &out); err != nil {
		return RollbackResult{}, err
	}
	return RollbackResult{State: out.State, Cleanup: out.Cleanup, Final: out.Final, Existed: out.Existed,
		Token: req.Token}, nil
}

// Complete removes a finished operation; existed says whether a state was still stored.
func (c *Client) Complete(ctx context.Context, lockKey, operationID string) (existed bool, err error) {
	var out completeReply
	err = c.call(ctx, "complete", &completeRequest{LockKey: lockKey, OperationID: operationID}, &out)
	return out.Existed, err
}

// PendingOptions select a page of pending.
type PendingOptions struct {
	LockKey   string        // "": every lock key (a SCAN walk: items may repeat, pages may be short)
	OlderThan time.Duration // 0: any age; else only items not updated for this long (whole seconds)
	Limit     int           // 0: the daemon's default (100)
	Cursor    string        // the previous page's Cursor; "": from the start
}

// Pending returns one page of live operations.
func (c *Client) Pending(ctx context.Context, opts PendingOptions) (PendingPage, error) {
	req := &pendingRequest{LockKey: opts.LockKey, Limit: opts.Limit, Cursor: opts.Cursor}
	if opts.OlderThan > 0 {
		req.OlderThanS = Expect(int64(opts.OlderThan / time.Second))
	}
	var out pendingReply
	if err := c.call(ctx, "pending", req, &out); err != nil {
		return PendingPage{}, err
	}
	return PendingPage{Items: out.Items, Cursor: deref(out.Cursor)}, nil
}

// EachPending calls fn for every pending operation, page after page, each
// once (a walk over every lock key may meet one twice); it stops at fn's first error.
func (c *Client) EachPending(ctx context.Context, opts PendingOptions, fn func(PendingItem) error) error {
	seen := map[[2]string]bool{}
	for {
		page, err := c.Pending(ctx, opts)
		if err != nil {
			return err
		}
		for _, item := range page.Items {
			key := [2]string{item.LockKey, item.OperationID}
			if seen[key] {
				continue
			}
			seen[key] = true
			if err := fn(item); err != nil {
				return err
			}
		}
		if page.Cursor == "" {
			return nil
		}
		opts.Cursor = page.Cursor
	}
}

// Stats returns the daemon's counters as it sends them (ints as int64).
func (c *Client) Stats(ctx context.Context) (map[string]any, error) {
	var out statsReply
	if err := c.call(ctx, "stats", &statsRequest{}, &out); err != nil {
		return nil, err
	}
	delete(out.Fields, "id")
	delete(out.Fields, "ok")
	return out.Fields, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
