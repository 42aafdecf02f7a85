package drawstate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/drawstate/drawstate/clients/go/internal/testdaemon"
)

// These tests pin the client's transport rules against a scripted peer: what
// the real daemon cannot be made to do on demand (break a connection under a
// request, answer late, answer with id nil).

// fakeDaemon answers each request with handle(connection number, request);
// a nil reply closes the connection without answering, and silent leaves the
// request unanswered on an open connection.
type fakeDaemon struct {
	path     string
	listener net.Listener
	mu       sync.Mutex
	requests []map[string]any
	handle   func(conn int, req map[string]any) map[string]any
}

// silent is the reply that answers nothing and keeps the connection open.
var silent = map[string]any{"silent": true}

func startFake(t *testing.T, handle func(conn int, req map[string]any) map[string]any) *fakeDaemon {
	t.Helper()
	return startFakeAt(t, filepath.Join(t.TempDir(), "f.sock"), handle)
}

func startFakeAt(t *testing.T, path string, handle func(conn int, req map[string]any) map[string]any) *fakeDaemon {
	t.Helper()
	listener, err := net.Listen("unix", path)
	must(t, err)
	f := &fakeDaemon{path: path, listener: listener, handle: handle}
	t.Cleanup(func() { _ = listener.Close() })
	go f.serve()
	return f
}

func (f *fakeDaemon) serve() {
	for n := 1; ; n++ {
		nc, err := f.listener.Accept()
		if err != nil {
			return
		}
		go f.serveConn(n, nc)
	}
}

func (f *fakeDaemon) serveConn(n int, nc net.Conn) {
	defer nc.Close()
	header := make([]byte, HeaderSize)
	for {
		if _, err := io.ReadFull(nc, header); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(header))
		if _, err := io.ReadFull(nc, body); err != nil {
			return
		}
		var decoded map[string]any
		if err := decodeBody(body, &decoded); err != nil {
			return
		}
		req := normalize(decoded).(map[string]any)
		f.mu.Lock()
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		reply := f.handle(n, req)
		if reply == nil {
			return
		}
		if reply["silent"] == true {
			continue
		}
		out, _ := msgpack.Marshal(reply)
		_, _ = nc.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(out))), out...))
	}
}

// ops is the op of each request seen, in order.
func (f *fakeDaemon) ops() []string {
	var ops []string
	for _, req := range f.seen() {
		ops = append(ops, req["op"].(string))
	}
	return ops
}

func (f *fakeDaemon) seen() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.requests...)
}

func ok(req map[string]any, fields map[string]any) map[string]any {
	reply := map[string]any{"id": req["id"], "ok": true}
	for k, v := range fields {
		reply[k] = v
	}
	return reply
}

func TestABrokenConnectionIsResentOnceWithTheSameToken(t *testing.T) {
	f := startFake(t, func(conn int, req map[string]any) map[string]any {
		if req["op"] != "save" {
			return ok(req, map[string]any{"redis": "up"})
		}
		if conn == 1 {
			return nil // the daemon "died" holding the save: its outcome is unknown
		}
		return ok(req, map[string]any{"version": int64(1), "ttl_s": int64(3600)})
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	_, err := c.Ping(ctx) // opens connection 1, which the save then finds already open
	must(t, err)
	state := newState(t)
	_, err = c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	var saves []map[string]any
	for _, req := range f.seen() {
		if req["op"] == "save" {
			saves = append(saves, req)
		}
	}
	if len(saves) != 2 || saves[0]["token"] != saves[1]["token"] || saves[0]["id"] == saves[1]["id"] {
		t.Errorf("want the same save twice, same token, new id: %v", saves)
	}
}

func TestAConnectionThatBreaksRightAfterOpeningIsNotResentAndIsSidecarTimeout(t *testing.T) {
	f := startFake(t, func(int, map[string]any) map[string]any { return nil })
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	_, err := c.Ping(ctxFor(t))
	// The request went out: it may have taken effect, so it is a timeout, which is also "unavailable".
	if !errors.Is(err, ErrSidecarTimeout) || !errors.Is(err, ErrSidecarUnavailable) || !IsRetryable(err) ||
		len(f.seen()) != 1 {
		t.Errorf("got %v after %d requests", err, len(f.seen()))
	}
}

func TestAConnectionLostUnderTheRequestAndItsResendIsSidecarTimeout(t *testing.T) {
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		if req["op"] == "save" {
			return nil // every connection dies holding the save
		}
		return ok(req, map[string]any{"redis": "up"})
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	_, err := c.Ping(ctx)
	must(t, err)
	state := newState(t)
	_, err = c.Save(ctx, &state, SaveOptions{})
	e := wantCode(t, err, ErrSidecarTimeout)
	if !errors.Is(err, ErrSidecarUnavailable) || e.Code != CodeSidecarTimeout {
		t.Errorf("got %#v", err)
	}
	if ops := f.ops(); !reflect.DeepEqual(ops, []string{"ping", "save", "save"}) {
		t.Errorf("requests %v: the save is sent once more, then given up", ops)
	}
}

func TestACallWhoseContextEndedSendsNothingAndKeepsTheConnection(t *testing.T) {
	f := startFake(t, func(conn int, req map[string]any) map[string]any {
		return ok(req, map[string]any{"redis": fmt.Sprint("conn ", conn)})
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	_, err := c.Ping(ctx)
	must(t, err)
	ended, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-ended.Done()
	state := newState(t)
	_, err = c.Save(ended, &state, SaveOptions{})
	if !errors.Is(err, ErrSidecarUnavailable) || errors.Is(err, ErrSidecarTimeout) ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call past its deadline before sending: %v", err)
	}
	result, err := c.Ping(ctx)
	must(t, err)
	if ops := f.ops(); !reflect.DeepEqual(ops, []string{"ping", "ping"}) || result.Redis != "conn 1" {
		t.Errorf("requests %v, the second ping on %q: want nothing sent, the connection kept", ops, result.Redis)
	}
}

func TestDeadlineMsIsTheTimeTheContextLeaves(t *testing.T) {
	f := startFake(t, func(_ int, req map[string]any) map[string]any { return ok(req, nil) })
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := c.Ping(ctx)
	must(t, err)
	_, err = NewClient(Options{SocketPath: f.path, Timeout: 300 * time.Millisecond}).Ping(context.Background())
	must(t, err)
	seen := f.seen()
	first, second := seen[0]["deadline_ms"].(int64), seen[1]["deadline_ms"].(int64)
	// Never more than the caller waits; the lower bounds leave a busy machine half the time to get there.
	if first > 1500 || first < 750 || second > 300 || second < 1 {
		t.Errorf("deadline_ms %d (context of 1.5 s) and %d (timeout of 300 ms)", first, second)
	}
}

func TestNoReplyWithinTheDeadlineIsSidecarTimeoutAndTheLateReplyIsDropped(t *testing.T) {
	release := make(chan struct{})
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		if req["op"] == "stats" {
			<-release // answered only after the caller gave up
		}
		return ok(req, map[string]any{"redis": "up"})
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Stats(ctx)
	if !errors.Is(err, ErrSidecarTimeout) || !errors.Is(err, ErrSidecarUnavailable) ||
		!errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
		t.Fatalf("got %v", err)
	}
	close(release)
	result, err := c.Ping(ctxFor(t)) // same connection: the late stats reply is not taken for this one
	if err != nil || result.Redis != "up" {
		t.Errorf("ping after a late reply: %+v, %v", result, err)
	}
}

func TestAReplyWithIDNilFailsTheRequestsWaiting(t *testing.T) {
	f := startFake(t, func(_ int, _ map[string]any) map[string]any {
		return map[string]any{"id": nil, "ok": false,
			"error": map[string]any{"code": "overloaded", "message": "too many connections", "retryable": true}}
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	_, err := c.Ping(ctxFor(t))
	if !errors.Is(err, ErrOverloaded) || !IsRetryable(err) {
		t.Errorf("got %v", err)
	}
}

func TestAnUnknownErrorCodeKeepsItsNameAndTheDaemonsRetryable(t *testing.T) {
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		return map[string]any{"id": req["id"], "ok": false,
			"error": map[string]any{"code": "brand_new", "message": "from the future", "retryable": true, "hint": "x"}}
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	_, err := c.Ping(ctxFor(t))
	var e *Error
	if !errors.As(err, &e) || e.Code != "brand_new" || !e.Retryable || e.Details["hint"] != "x" {
		t.Errorf("got %#v", err)
	}
	if errors.Is(err, ErrInternal) {
		t.Error("an unknown code is not internal")
	}
}

func TestARequestOverTheFrameCapIsRefusedWithoutSending(t *testing.T) {
	f := startFake(t, func(_ int, req map[string]any) map[string]any { return ok(req, nil) })
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	state := newState(t)
	state.Metadata = map[string]string{"blob": strings.Repeat("x", MaxFrameBytes)}
	_, err := c.Save(ctxFor(t), &state, SaveOptions{})
	if !errors.Is(err, ErrFrameTooLarge) || len(f.seen()) != 0 {
		t.Errorf("got %v after %d requests", err, len(f.seen()))
	}
}

func TestMultiDrawResendsARetryableFailedSaveWithItsToken(t *testing.T) {
	saves := 0
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		if req["op"] != "save" {
			return ok(req, nil)
		}
		saves++
		if saves == 2 { // the first record: Redis "failed", though the write may have happened
			return map[string]any{"id": req["id"], "ok": false,
				"error": map[string]any{"code": "redis_unavailable", "message": "down", "retryable": true}}
		}
		return ok(req, map[string]any{"version": int64(saves), "ttl_s": int64(3600)})
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{})
	must(t, err)
	index, err := draw.RecordResult(ctx, 42)
	must(t, err)
	if index != 1 || draw.Version() != 3 {
		t.Errorf("index %d, version %d", index, draw.Version())
	}
	seen := f.seen()
	if len(seen) != 3 || seen[1]["token"] != seen[2]["token"] || seen[0]["token"] == seen[1]["token"] {
		t.Errorf("want the failed save resent with its token: %v", seen)
	}
	if seen[0]["expect_version"] != int64(0) || seen[2]["expect_version"] != int64(1) {
		t.Errorf("expect_version: start %v, record %v", seen[0]["expect_version"], seen[2]["expect_version"])
	}
}

// startOwnDaemon starts a daemon the test may stop and restart.
func startOwnDaemon(t *testing.T) (*testdaemon.Daemon, error) {
	d, err := testdaemon.Start()
	if err == nil {
		t.Cleanup(d.Stop)
	}
	return d, err
}
