package drawstate

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// MultiDraw's resends against a scripted peer: answers the real daemon gives
// only in an outage (or never on demand), repeated until the test says so.

// shortResend keeps the tests quick; the machine may be busy, so nothing depends on its exact length.
const shortResend = 300 * time.Millisecond

// ctxWithoutDeadline is a context that ends only with the test: calls get the client's Timeout.
func ctxWithoutDeadline(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

func failure(req map[string]any, code string, retryable bool) map[string]any {
	return map[string]any{"id": req["id"], "ok": false,
		"error": map[string]any{"code": code, "message": "scripted", "retryable": retryable}}
}

// scriptedSaves answers the first save (the start) with version 1, and every
// later save with fail(req) until healed, then with the next version.
func scriptedSaves(t *testing.T, healed *atomic.Bool, fail func(req map[string]any) map[string]any) *fakeDaemon {
	var versions atomic.Int64
	return startFake(t, func(_ int, req map[string]any) map[string]any {
		if req["op"] != "save" {
			return ok(req, nil)
		}
		if versions.Load() > 0 && !healed.Load() {
			return fail(req)
		}
		return ok(req, map[string]any{"version": versions.Add(1), "ttl_s": int64(3600)})
	})
}

// tokensOf is the token of every request of op, in order.
func tokensOf(f *fakeDaemon, op string) []string {
	var tokens []string
	for _, req := range f.seen() {
		if req["op"] == op {
			tokens = append(tokens, req["token"].(string))
		}
	}
	return tokens
}

func allEqual(tokens []string) bool {
	for _, token := range tokens {
		if token != tokens[0] {
			return false
		}
	}
	return len(tokens) > 0
}

func TestARecordWithoutADefiniteAnswerIsOutcomeUnknownAndTheSameSaveIsResentNextTime(t *testing.T) {
	var healed atomic.Bool
	f := scriptedSaves(t, &healed, func(req map[string]any) map[string]any {
		return failure(req, CodeRedisUnavailable, true) // Redis may have taken the write before failing
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{SessionOptions: SessionOptions{ResendDeadline: shortResend}})
	must(t, err)
	_, err = draw.RecordResult(ctx, 42)
	if !errors.Is(err, ErrOutcomeUnknown) || !IsRetryable(err) || errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("a save left in doubt: %v", err)
	}
	inDoubt := tokensOf(f, "save")[1:]
	if len(inDoubt) < 2 || !allEqual(inDoubt) {
		t.Fatalf("want the save resent with one token: %v", inDoubt)
	}
	healed.Store(true)
	index, err := draw.RecordResult(ctx, 42)
	must(t, err)
	after := tokensOf(f, "save")[1:]
	if index != 1 || !allEqual(after) || len(after) != len(inDoubt)+1 || draw.Version() != 2 {
		t.Errorf("index %d, version %d, tokens %v: want the same save once more", index, draw.Version(), after)
	}
}

func TestASaveNeverSentIsTheLastErrorNotOutcomeUnknown(t *testing.T) {
	c := NewClient(Options{SocketPath: t.TempDir() + "/none.sock"})
	defer c.Close()
	_, err := StartMultiDraw(ctxFor(t), c, lockKey(t), 3, StartOptions{SessionOptions: SessionOptions{ResendDeadline: shortResend}})
	if !errors.Is(err, ErrSidecarUnavailable) || errors.Is(err, ErrSidecarTimeout) || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("no daemon: got %v", err)
	}
}

func TestASaveTheDaemonRefusedAsOverloadedIsTheLastErrorNotOutcomeUnknown(t *testing.T) {
	var healed atomic.Bool
	f := scriptedSaves(t, &healed, func(map[string]any) map[string]any {
		return map[string]any{"id": nil, "ok": false,
			"error": map[string]any{"code": CodeOverloaded, "message": "too many connections", "retryable": true}}
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{SessionOptions: SessionOptions{ResendDeadline: shortResend}})
	must(t, err)
	_, err = draw.RecordResult(ctx, 1)
	if !errors.Is(err, ErrOverloaded) || errors.Is(err, ErrOutcomeUnknown) || len(tokensOf(f, "save")) < 3 {
		t.Errorf("got %v after %d saves", err, len(tokensOf(f, "save")))
	}
}

func TestASaveWhoseRepliesNeverComeIsOutcomeUnknownNotUnavailable(t *testing.T) {
	var healed atomic.Bool
	f := scriptedSaves(t, &healed, func(map[string]any) map[string]any { return silent })
	c := NewClient(Options{SocketPath: f.path, Timeout: 100 * time.Millisecond})
	defer c.Close()
	draw, err := StartMultiDraw(ctxFor(t), c, lockKey(t), 3, StartOptions{SessionOptions: SessionOptions{ResendDeadline: shortResend}})
	must(t, err)
	// A context without a deadline: each attempt gets the client's Timeout.
	_, err = draw.RecordResult(ctxWithoutDeadline(t), 1)
	if !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrSidecarUnavailable) {
		t.Errorf("unanswered saves: got %v", err)
	}
	if saves := tokensOf(f, "save")[1:]; len(saves) < 2 || !allEqual(saves) {
		t.Errorf("want the save resent with one token: %v", saves)
	}
}

func TestARollbackIsResentWithTheSessionsTokenUntilItsAnswerIsDefinite(t *testing.T) {
	var answerAfter atomic.Int64
	answerAfter.Store(3)
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		switch req["op"] {
		case "save":
			return ok(req, map[string]any{"version": int64(1), "ttl_s": int64(3600)})
		case "rollback":
			if answerAfter.Add(-1) >= 0 {
				return failure(req, CodeOutcomeUnknown, true) // applied, but who pays is not confirmed yet
			}
			return ok(req, map[string]any{"state": req["state"], "cleanup": "done", "final": true, "existed": true})
		}
		return ok(req, nil)
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{SessionOptions: SessionOptions{ResendDeadline: 10 * time.Second}})
	must(t, err)
	refund, err := draw.Rollback(ctx, "cancelled")
	must(t, err)
	tokens := tokensOf(f, "rollback")
	if !refund.Final || !refund.Existed || refund.Token != draw.RollbackToken() || len(tokens) != 4 ||
		!allEqual(tokens) || tokens[0] != draw.RollbackToken() {
		t.Errorf("refund %+v, tokens %v, session token %s", refund, tokens, draw.RollbackToken())
	}
}

func TestARollbackLeftInDoubtIsOutcomeUnknownAndItsRepeatSendsTheSameToken(t *testing.T) {
	var healed atomic.Bool
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		switch req["op"] {
		case "save":
			return ok(req, map[string]any{"version": int64(1), "ttl_s": int64(3600)})
		case "rollback":
			if !healed.Load() {
				return failure(req, CodeOutcomeUnknown, true)
			}
			return ok(req, map[string]any{"state": req["state"], "cleanup": "done", "final": true, "existed": true})
		}
		return ok(req, nil)
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{SessionOptions: SessionOptions{
		ResendDeadline: shortResend, RollbackToken: "stored-token-1"}})
	must(t, err)
	_, err = draw.Rollback(ctx, "cancelled")
	if !errors.Is(err, ErrOutcomeUnknown) || draw.Closed() != "" {
		t.Fatalf("a rollback left in doubt: %v, closed %q", err, draw.Closed())
	}
	healed.Store(true)
	refund, err := draw.Rollback(ctx, "cancelled")
	must(t, err)
	if tokens := tokensOf(f, "rollback"); !refund.Final || !allEqual(tokens) || tokens[0] != "stored-token-1" ||
		draw.RollbackToken() != "stored-token-1" {
		t.Errorf("refund %+v, tokens %v", refund, tokens)
	}
}

func TestADeferredAnswerAfterAnAttemptThatMayHaveAppliedDecidesNothing(t *testing.T) {
	var healed atomic.Bool
	var first atomic.Bool
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		switch req["op"] {
		case "save":
			return ok(req, map[string]any{"version": int64(1), "ttl_s": int64(3600)})
		case "rollback":
			if first.CompareAndSwap(false, true) {
				return failure(req, CodeOutcomeUnknown, true) // maybe decided "this caller pays"
			}
			if !healed.Load() { // Redis unreachable now: journaled, "deferred"
				return ok(req, map[string]any{"state": req["state"], "cleanup": "deferred", "final": false, "existed": false})
			}
			return ok(req, map[string]any{"state": req["state"], "cleanup": "done", "final": true, "existed": true})
		}
		return ok(req, nil)
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{SessionOptions: SessionOptions{ResendDeadline: shortResend}})
	must(t, err)
	if _, err = draw.Rollback(ctx, "cancelled"); !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("a deferred answer after a doubtful attempt must not decide: %v", err)
	}
	healed.Store(true)
	refund, err := draw.Rollback(ctx, "cancelled")
	must(t, err)
	if !refund.Final || !allEqual(tokensOf(f, "rollback")) {
		t.Errorf("refund %+v", refund)
	}
}

func TestExistedFalseForAnOperationThisSessionStoredIsNeverRefundedHere(t *testing.T) {
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		switch req["op"] {
		case "save":
			return ok(req, map[string]any{"version": int64(1), "ttl_s": int64(3600)})
		case "rollback": // its tombstone expired: the operation ended long ago
			return ok(req, map[string]any{"state": nil, "cleanup": "done", "final": true, "existed": false})
		}
		return ok(req, nil)
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	ctx := ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{})
	must(t, err)
	if _, err = draw.Rollback(ctx, "late"); !errors.Is(err, ErrOperationClosed) || !draw.Lost() {
		t.Fatalf("want ErrOperationClosed and a lost session, got %v", err)
	}
}
