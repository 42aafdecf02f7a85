package drawstate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"
)

// These tests talk to a real drawstated (and its redis-server), started by TestMain.

func TestPingReportsRedisUpAndTheDaemonVersion(t *testing.T) {
	c := newClient(t)
	result, err := c.Ping(ctxFor(t))
	must(t, err)
	if result.Redis != "up" || result.Version == "" {
		t.Errorf("ping: %+v", result)
	}
}

func TestSaveThenLoadReturnsTheSameStateWithItsVersion(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	result, err := c.Save(ctx, &state, SaveOptions{ExpectVersion: Expect(0), TTL: time.Hour})
	must(t, err)
	if result.Version != 1 || state.Version != 1 || result.TTLs != 3600 {
		t.Fatalf("save: %+v, state version %d", result, state.Version)
	}
	loaded, err := c.Load(ctx, state.LockKey, state.OperationID)
	must(t, err)
	if loaded == nil || !reflect.DeepEqual(*loaded, state) {
		t.Errorf("loaded %+v\nsaved %+v", loaded, state)
	}
	newest, err := c.Load(ctx, state.LockKey, "")
	must(t, err)
	if newest == nil || newest.OperationID != state.OperationID {
		t.Errorf("newest of the lock key: %+v", newest)
	}
}

func TestLoadOfAnUnknownOperationIsNilNotAnError(t *testing.T) {
	c := newClient(t)
	state, err := c.Load(ctxFor(t), lockKey(t), "20240101_000000_00000000")
	if err != nil || state != nil {
		t.Errorf("load: %+v, %v", state, err)
	}
}

func TestSaveWithTheSameTokenIsAReplayThatWritesNothing(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	first, err := c.Save(ctx, &state, SaveOptions{Token: "replay-1"})
	must(t, err)
	again, err := c.Save(ctx, &state, SaveOptions{Token: "replay-1"})
	must(t, err)
	if first.Version != 1 || again.Version != 1 {
		t.Errorf("versions %d then %d: a replay must not write", first.Version, again.Version)
	}
	next, err := c.Save(ctx, &state, SaveOptions{Token: "replay-2"})
	must(t, err)
	if next.Version != 2 {
		t.Errorf("a new token saves again: version %d", next.Version)
	}
}

func TestCreateOnlySaveOfAnExistingOperationIsVersionConflictWithTheStoredVersion(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{ExpectVersion: Expect(0)})
	must(t, err)
	_, err = c.Save(ctx, &state, SaveOptions{ExpectVersion: Expect(0)})
	e := wantCode(t, err, ErrVersionConflict)
	if stored, ok := e.StoredVersion(); !ok || stored != 1 || e.Retryable || IsRetryable(err) {
		t.Errorf("stored_version %d (%v), retryable %v", stored, ok, e.Retryable)
	}
}

func TestSaveThatRewritesRecordedDrawsIsStaleStateNamingTheField(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	state.Results[0] = 8
	_, err = c.Save(ctx, &state, SaveOptions{})
	if e := wantCode(t, err, ErrStaleState); e.Field() != "results" {
		t.Errorf("field %q", e.Field())
	}
}

func TestStateBreakingARuleIsDrawStateCorrupted(t *testing.T) {
	c := newClient(t)
	state := newState(t)
	state.CompletedCount = 11 // more than total_count
	_, err := c.Save(ctxFor(t), &state, SaveOptions{})
	wantCode(t, err, ErrDrawStateCorrupted)
}

func TestRollbackReturnsTheRemovedStateAndClosesTheOperation(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	result, err := c.Rollback(ctx, state.LockKey, state.OperationID, RollbackOptions{Reason: "player cancelled"})
	must(t, err)
	if result.Cleanup != "done" || result.State == nil || !reflect.DeepEqual(*result.State, state) {
		t.Fatalf("rollback: %+v", result)
	}
	_, err = c.Save(ctx, &state, SaveOptions{})
	if e := wantCode(t, err, ErrOperationClosed); e.ClosedBy() != "rollback" {
		t.Errorf("closed_by %q", e.ClosedBy())
	}
	loaded, err := c.Load(ctx, state.LockKey, state.OperationID)
	if err != nil || loaded != nil {
		t.Errorf("a rolled-back operation loads as %+v, %v", loaded, err)
	}
}

// Waits for the daemon's outcome-stream contract (rollback token, final, existed).
func TestRollbackTokenMakesTheCallerFinalAndARepeatGetsTheSameAnswer(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	first, err := c.RollbackState(ctx, &state, RollbackOptions{Token: "refund-1"})
	must(t, err)
	if !first.Final || !first.Existed || first.Token != "refund-1" {
		t.Fatalf("the caller that rolled it back pays: %+v", first)
	}
	again, err := c.RollbackState(ctx, &state, RollbackOptions{Token: "refund-1"})
	must(t, err)
	if !reflect.DeepEqual(again, first) {
		t.Errorf("a repeat with the same token got %+v, first %+v", again, first)
	}
	_, err = c.RollbackState(ctx, &state, RollbackOptions{Token: "refund-2"})
	if e := wantCode(t, err, ErrOperationClosed); e.ClosedBy() != "rollback" {
		t.Errorf("another token after the rollback: closed_by %q", e.ClosedBy())
	}
}

func TestRollbackRefundedByTheStreamIsNeverFinalAndARepeatAskingToPayHearsTheSame(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	first, err := c.RollbackState(ctx, &state, RollbackOptions{Token: "by-stream", RefundBy: RefundByStream})
	must(t, err)
	if first.Final || !first.Existed || first.Cleanup != "done" || first.State == nil {
		t.Fatalf("a rollback refunded by the stream: %+v", first)
	}
	again, err := c.RollbackState(ctx, &state, RollbackOptions{Token: "by-stream", RefundBy: RefundByCaller})
	must(t, err)
	if again.Final || !again.Existed {
		t.Errorf("a repeat asking to pay heard %+v: the stream was to pay", again)
	}
}

func TestRollbackGuardedByAVersionThatMovedOnChangesNothing(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	_, err = c.Rollback(ctx, state.LockKey, state.OperationID, RollbackOptions{ExpectVersion: Expect(2)})
	if stored, ok := wantCode(t, err, ErrVersionConflict).StoredVersion(); !ok || stored != 1 {
		t.Errorf("stored_version %d, %v", stored, ok)
	}
	loaded, err := c.Load(ctx, state.LockKey, state.OperationID)
	if err != nil || loaded == nil {
		t.Fatalf("a refused guarded rollback left %+v, %v", loaded, err)
	}
	done, err := c.Rollback(ctx, state.LockKey, state.OperationID, RollbackOptions{ExpectVersion: Expect(1)})
	must(t, err)
	if !done.Final || !done.Existed {
		t.Errorf("a rollback guarded by the stored version: %+v", done)
	}
}

func TestRollbackOfAnUnknownOperationRemovesNothing(t *testing.T) {
	c := newClient(t)
	result, err := c.Rollback(ctxFor(t), lockKey(t), "20240101_000000_00000001", RollbackOptions{})
	must(t, err)
	if result.State != nil || result.Cleanup != "done" || result.Existed || !result.Final || result.Token == "" {
		t.Errorf("rollback of nothing: %+v", result)
	}
}

func TestCompleteReportsWhetherTheStateExistedAndBlocksARollback(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	existed, err := c.Complete(ctx, state.LockKey, state.OperationID)
	must(t, err)
	again, err := c.Complete(ctx, state.LockKey, state.OperationID)
	must(t, err)
	if !existed || !again {
		t.Errorf("complete: existed %v, repeated %v (a repeat answers the same)", existed, again)
	}
	_, err = c.Rollback(ctx, state.LockKey, state.OperationID, RollbackOptions{})
	if e := wantCode(t, err, ErrOperationClosed); e.ClosedBy() != "complete" {
		t.Errorf("closed_by %q", e.ClosedBy())
	}
}

func TestPendingListsLiveOperationsPageByPage(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	key := lockKey(t)
	saved := map[string]bool{}
	for i := 0; i < 3; i++ {
		state := newState(t)
		state.LockKey, state.OperationID = key, fmt.Sprintf("op_%d", i)
		_, err := c.Save(ctx, &state, SaveOptions{})
		must(t, err)
		saved[state.OperationID] = true
	}
	page, err := c.Pending(ctx, PendingOptions{LockKey: key, Limit: 2})
	must(t, err)
	if len(page.Items) != 2 || page.Cursor == "" {
		t.Fatalf("first page: %+v", page)
	}
	listed := map[string]bool{}
	must(t, c.EachPending(ctx, PendingOptions{LockKey: key, Limit: 1}, func(item PendingItem) error {
		if item.LockKey != key || item.TotalCount != 10 || item.CompletedCount != 2 || item.Version != 1 {
			t.Errorf("item %+v", item)
		}
		listed[item.OperationID] = true
		return nil
	}))
	if !reflect.DeepEqual(listed, saved) {
		t.Errorf("listed %v, saved %v", listed, saved)
	}
	old, err := c.Pending(ctx, PendingOptions{LockKey: key, OlderThan: 24 * time.Hour})
	must(t, err)
	if len(old.Items) != 0 {
		t.Errorf("nothing is a day old: %+v", old.Items)
	}
}

func TestStatsCountRequestsByOpAndCode(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	_, err := c.Ping(ctx)
	must(t, err)
	stats, err := c.Stats(ctx)
	must(t, err)
	requests, _ := stats["requests"].(map[string]any)
	pings, _ := requests["ping"].(map[string]any)
	if n, _ := pings["ok"].(int64); n < 1 {
		t.Errorf("stats requests: %v", stats["requests"])
	}
	if _, ok := stats["ok"]; ok {
		t.Error("stats keeps the envelope's ok")
	}
}

func TestAuditListsTheRollbackWithWhatItRemoved(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	_, err = c.RollbackState(ctx, &state, RollbackOptions{Reason: "audit me"})
	must(t, err)
	page, err := c.Audit(ctx, AuditOptions{LockKey: state.LockKey})
	must(t, err)
	if len(page.Items) != 1 {
		t.Fatalf("audit: %+v", page)
	}
	event := page.Items[0]
	if event.Event != "rollback" || event.OperationID != state.OperationID || event.Reason != "audit me" ||
		!event.Existed || event.CompletedCount != 2 || !reflect.DeepEqual(event.Results, state.Results) ||
		!reflect.DeepEqual(event.Metadata, state.Metadata) || event.ID == "" {
		t.Errorf("event %+v", event)
	}
	// Its caller was told Final: the refund is the caller's, not a refund worker's.
	if !event.RefundedByCaller || event.RefundOwed() || event.UngrantedCount() != 8 {
		t.Errorf("refunded by caller %v, refund owed %v, ungranted %d",
			event.RefundedByCaller, event.RefundOwed(), event.UngrantedCount())
	}
}

// endingOf is the one outcome event of state's operation, read through audit.
func endingOf(t *testing.T, c *Client, state DrawState) OutcomeEvent {
	t.Helper()
	page, err := c.Audit(ctxFor(t), AuditOptions{LockKey: state.LockKey})
	must(t, err)
	if len(page.Items) != 1 || page.Items[0].OperationID != state.OperationID {
		t.Fatalf("audit of %s: %+v", state.LockKey, page.Items)
	}
	return page.Items[0]
}

func TestACompleteWithAFailedDrawOwesItsRefundThroughTheStream(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t) // 2 granted and draw 3 failed, of 10
	state.TotalCount = 3
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	_, err = c.Complete(ctx, state.LockKey, state.OperationID)
	must(t, err)
	event := endingOf(t, c, state)
	if event.Event != EventComplete || !event.Terminal() || !event.Existed || event.RefundedByCaller ||
		event.Errors != 1 || !reflect.DeepEqual(event.FailedDraws, []int{3}) {
		t.Fatalf("event %+v", event)
	}
	if event.UngrantedCount() != 1 || !event.RefundOwed() {
		t.Errorf("the failed draw is owed: ungranted %d, refund owed %v", event.UngrantedCount(), event.RefundOwed())
	}
}

func TestARollbackOfNothingStoredOwesNothing(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	state := newState(t)
	result, err := c.Rollback(ctx, state.LockKey, state.OperationID, RollbackOptions{})
	must(t, err)
	event := endingOf(t, c, state)
	if !result.Final || result.Existed || event.Existed || event.TotalCount != 0 || event.RefundOwed() {
		t.Errorf("rollback %+v, event %+v (refund owed %v)", result, event, event.RefundOwed())
	}
}

func TestEachOutcomeAcknowledgesAnEventOnlyOnceItsHandlerSucceeded(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	group := fmt.Sprintf("each.%d.%d", os.Getpid(), lockKeys.Add(1))
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	_, err = c.Complete(ctx, state.LockKey, state.OperationID)
	must(t, err)
	consume := ConsumeOptions{OutcomesOptions: OutcomesOptions{Group: group, Consumer: "w1", Block: 50 * time.Millisecond},
		StopWhenIdle: true}

	errPayment := errors.New("payments database down")
	var handled []string
	err = c.EachOutcome(ctx, consume, func(event OutcomeEvent) error {
		if event.OperationID == state.OperationID {
			return errPayment // every other event of the shared daemon is handled and acknowledged
		}
		handled = append(handled, event.ID)
		return nil
	})
	if !errors.Is(err, errPayment) {
		t.Fatalf("EachOutcome returned %v, not the handler's error", err)
	}
	mine := 0
	must(t, c.EachOutcome(ctx, consume, func(event OutcomeEvent) error {
		if event.OperationID == state.OperationID {
			mine++
		} else {
			t.Errorf("event %s came again though its handler succeeded", event.ID)
		}
		return nil
	}))
	if mine != 1 {
		t.Fatalf("the event whose handler failed came %d times, want once", mine)
	}
	must(t, c.EachOutcome(ctx, consume, func(event OutcomeEvent) error {
		if event.OperationID == state.OperationID {
			t.Errorf("event %s came again after its handler succeeded", event.ID)
		}
		return nil
	}))
}

func TestEachOutcomeStopsWhenItsContextEnds(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithTimeout(ctxFor(t), 300*time.Millisecond)
	defer cancel()
	consume := ConsumeOptions{OutcomesOptions: OutcomesOptions{Group: fmt.Sprintf("idle.%d", lockKeys.Add(1)),
		Consumer: "w1", Block: 100 * time.Millisecond}}
	err := c.EachOutcome(ctx, consume, func(OutcomeEvent) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v", err)
	}
}

// Waits for the daemon's outcome-stream contract (outcomes, ack).
func TestOutcomesDeliverEachEndUntilItIsAcked(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	group := fmt.Sprintf("g.%d", lockKeys.Add(1))
	state := newState(t)
	_, err := c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	_, err = c.Complete(ctx, state.LockKey, state.OperationID)
	must(t, err)

	find := func() []OutcomeEvent {
		var mine []OutcomeEvent
		events, err := c.Outcomes(ctx, OutcomesOptions{Group: group, Consumer: "c1", Limit: 1000})
		must(t, err)
		for _, event := range events {
			if event.OperationID == state.OperationID {
				mine = append(mine, event)
			}
		}
		return mine
	}
	first := find()
	if len(first) != 1 || first[0].Event != "complete" || !first[0].Existed || first[0].RefundedByCaller {
		t.Fatalf("outcomes: %+v", first)
	}
	if again := find(); len(again) != 1 || again[0].ID != first[0].ID {
		t.Fatalf("an unacked event comes again: %+v", again)
	}
	acked, err := c.Ack(ctx, group, []string{first[0].ID})
	must(t, err)
	if acked != 1 {
		t.Errorf("acked %d", acked)
	}
	if after := find(); len(after) != 0 {
		t.Errorf("an acked event came again: %+v", after)
	}
}

func TestConcurrentCallsShareOneConnectionAndGetTheirOwnReplies(t *testing.T) {
	probe, ctx := newClient(t), ctxFor(t)
	before, err := probe.Stats(ctx)
	must(t, err)
	c := newClient(t)
	const workers = 48
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			state := newState(t)
			state.Results = []int64{int64(i), int64(i * 2)}
			if _, err := c.Save(ctx, &state, SaveOptions{}); err != nil {
				errs <- err
				return
			}
			loaded, err := c.Load(ctx, state.LockKey, state.OperationID)
			if err != nil || loaded == nil || loaded.Results[0] != int64(i) {
				errs <- fmt.Errorf("worker %d loaded %+v, %v", i, loaded, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	after, err := probe.Stats(ctx)
	must(t, err)
	if opened := after["connections_total"].(int64) - before["connections_total"].(int64); opened != 1 {
		t.Errorf("%d workers opened %d connections, want 1", workers, opened)
	}
}

func TestUnreachableDaemonIsSidecarUnavailableAndRetryableNotATimeout(t *testing.T) {
	c := NewClient(Options{SocketPath: t.TempDir() + "/none.sock"})
	defer c.Close()
	_, err := c.Ping(ctxFor(t))
	// Nothing was sent, so nothing can have happened: not sidecar_timeout.
	if !errors.Is(err, ErrSidecarUnavailable) || errors.Is(err, ErrSidecarTimeout) || !IsRetryable(err) {
		t.Errorf("got %v", err)
	}
}

func TestCallsAfterCloseFail(t *testing.T) {
	c := newClient(t)
	must(t, c.Close())
	if _, err := c.Ping(ctxFor(t)); !errors.Is(err, ErrClientClosed) {
		t.Errorf("got %v", err)
	}
}

func TestAClientReconnectsAfterTheDaemonRestarts(t *testing.T) {
	needDaemon(t)
	d, err := startOwnDaemon(t)
	must(t, err)
	c := NewClient(Options{SocketPath: d.Socket, Timeout: callTimeout})
	defer c.Close()
	ctx := ctxFor(t)
	_, err = c.Ping(ctx)
	must(t, err)
	d.StopDaemon()
	must(t, d.StartDaemon())
	state := newState(t)
	_, err = c.Save(ctx, &state, SaveOptions{})
	must(t, err)
	if state.Version != 1 {
		t.Errorf("version %d", state.Version)
	}
}
