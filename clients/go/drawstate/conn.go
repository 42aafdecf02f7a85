package drawstate

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// readBufferBytes sizes the reader in front of the socket: most replies fit whole.
const readBufferBytes = 64 << 10

// errBroken marks a request whose connection broke after the request was
// written whole, before its reply came: its outcome is unknown (it may have
// taken effect), and every op is safe to send again (protocol §10).
var errBroken = errors.New("connection to the daemon broke")

// errNotSent marks a request that never went out whole (the connection was
// already broken, the deadline had passed, or the write stopped short): the
// daemon reads only whole frames, so it cannot have acted on it.
var errNotSent = errors.New("request not sent")

// notSent is errNotSent with its cause, both visible to errors.Is (Go 1.19 has
// no fmt.Errorf with two %w).
type notSent struct{ cause error }

func (e *notSent) Error() string        { return "request not sent: " + e.cause.Error() }
func (e *notSent) Unwrap() error        { return e.cause }
func (e *notSent) Is(target error) bool { return target == errNotSent }

// result is what the reader hands a waiting call: a reply body, or why there is none.
type result struct {
	body []byte
	err  error
}

// conn is one pipelined connection: many requests in flight, replies matched
// by id as they come, in any order (protocol §5). A reply whose caller stopped
// waiting is dropped. Once broken, a conn stays broken; the Client dials anew.
type conn struct {
	nc      net.Conn
	writeMu sync.Mutex // one frame per Write, frames never interleaved

	mu      sync.Mutex
	pending map[int64]chan result
	err     error // why the connection broke; nil while it works
}

func dial(ctx context.Context, path string) (*conn, error) {
	var dialer net.Dialer
	nc, err := dialer.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, pending: map[int64]chan result{}}
	go c.readLoop()
	return c, nil
}

// broken reports why the connection can no longer be used, or nil.
func (c *conn) broken() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// send writes one frame and returns the channel its reply will come on. An
// error wraps errNotSent: the frame did not go out whole.
func (c *conn) send(ctx context.Context, id int64, frame []byte) (<-chan result, error) {
	if err := ctx.Err(); err != nil {
		return nil, &notSent{err}
	}
	ch := make(chan result, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, &notSent{err}
	}
	c.pending[id] = ch // before the write: the reply may come before Write returns
	c.mu.Unlock()

	c.writeMu.Lock()
	deadline, _ := ctx.Deadline()
	_ = c.nc.SetWriteDeadline(deadline)
	n, err := c.nc.Write(frame)
	c.writeMu.Unlock()
	if err != nil {
		c.forget(id)
		var timeout net.Error
		if n > 0 || !errors.As(err, &timeout) || !timeout.Timeout() {
			// Part of a frame on the stream, or a dead socket: nothing after it could be read.
			c.fail(fmt.Errorf("%w: %v", errBroken, err))
		} // else nothing was written: the stream is still in step and the connection stays
		return nil, &notSent{err}
	}
	return ch, nil
}

// forget drops a request the caller stopped waiting for; its reply, if it comes, is discarded.
func (c *conn) forget(id int64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// fail breaks the connection once: every request still waiting learns why.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = map[int64]chan result{}
	c.mu.Unlock()
	_ = c.nc.Close()
	for _, ch := range pending {
		ch <- result{err: err}
	}
}

func (c *conn) close() { c.fail(ErrClientClosed) }

// readLoop cuts reply frames and hands each to the request with its id.
func (c *conn) readLoop() {
	r := bufio.NewReaderSize(c.nc, readBufferBytes)
	header := make([]byte, HeaderSize)
	for {
		if _, err := io.ReadFull(r, header); err != nil {
			c.fail(fmt.Errorf("%w: %v", errBroken, err))
			return
		}
		length := binary.BigEndian.Uint32(header)
		if length > MaxFrameBytes {
			// The stream cannot be trusted past a length like this: treat it as broken.
			c.fail(fmt.Errorf("%w: reply frame declares %d bytes, over %d", errBroken, length, MaxFrameBytes))
			return
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(r, body); err != nil {
			c.fail(fmt.Errorf("%w: %v", errBroken, err))
			return
		}
		id, err := peekID(body)
		if err != nil {
			c.fail(newError(CodeInternal, fmt.Sprintf("malformed reply from the daemon: %v", err), err))
			return
		}
		if id == nil {
			c.answerAll(body)
			continue
		}
		c.mu.Lock()
		ch := c.pending[*id]
		delete(c.pending, *id)
		c.mu.Unlock()
		if ch != nil {
			ch <- result{body: body}
		}
	}
}

// answerAll gives a reply with id nil to every request waiting: the daemon
// could not tell which request it answers (or refuses the connection as a
// whole), so each of them gets its error (protocol §4).
func (c *conn) answerAll(body []byte) {
	c.mu.Lock()
	pending := c.pending
	c.pending = map[int64]chan result{}
	c.mu.Unlock()
	for _, ch := range pending {
		ch <- result{body: body}
	}
}

// remainingMs is the deadline_ms to send: the time the caller still waits, at least 1.
func remainingMs(deadline time.Time) int64 {
	ms := time.Until(deadline).Milliseconds()
	if ms < 1 {
		return 1
	}
	return ms
}
