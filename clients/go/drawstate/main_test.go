package drawstate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drawstate/drawstate/clients/go/internal/testdaemon"
)

// callTimeout is generous: the tests share a 2-core machine with others.
const callTimeout = 10 * time.Second

// shared is the daemon most tests use; nil with unavailable set when none can run here.
var (
	shared      *testdaemon.Daemon
	unavailable error
	lockKeys    atomic.Int64
)

func TestMain(m *testing.M) {
	shared, unavailable = testdaemon.Start()
	if unavailable != nil && !errors.Is(unavailable, testdaemon.ErrUnavailable) {
		fmt.Fprintln(os.Stderr, "test daemon failed to start:", unavailable)
		os.Exit(1)
	}
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// needDaemon skips the test when no daemon can run here, or fails it where one must.
func needDaemon(t *testing.T) *testdaemon.Daemon {
	t.Helper()
	if shared == nil {
		if testdaemon.Required() {
			t.Fatalf("%s=1 and %v", testdaemon.RequireEnv, unavailable)
		}
		t.Skip(unavailable)
	}
	return shared
}

// newClient connects to the shared daemon; closed when the test ends.
func newClient(t *testing.T) *Client {
	t.Helper()
	d := needDaemon(t)
	c := NewClient(Options{SocketPath: d.Socket, Timeout: callTimeout})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// lockKey is a lock key no other test uses: tests share one daemon and its Redis.
func lockKey(t *testing.T) string {
	name := strings.NewReplacer("/", ":", " ", "_").Replace(t.Name())
	return fmt.Sprintf("go:%s:%d:%d", name, os.Getpid(), lockKeys.Add(1))
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newState is a valid state with three of ten draws made and one failed.
func newState(t *testing.T) DrawState {
	now := time.Now().Unix()
	return DrawState{
		LockKey: lockKey(t), OperationID: NewOperationID(time.Now()), TotalCount: 10, CompletedCount: 2,
		Results:      []int64{7, -(1<<53 - 1)},
		PrizeResults: []Prize{{ID: "gold", Name: "Gold <Dragon> & co", Probability: 0.1, Value: 500}},
		Errors:       []DrawError{{DrawIndex: 3, ErrorMessage: "rng timeout", Timestamp: now}},
		StartTime:    now, LastUpdateTime: now,
		Metadata: map[string]string{"user_id": "1001", "banner": "summer", "price_paid": "1600"},
	}
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantCode fails the test unless err is the sentinel's code.
func wantCode(t *testing.T, err error, sentinel *Error) *Error {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("want %s, got %v", sentinel.Code, err)
	}
	var e *Error
	errors.As(err, &e)
	return e
}
