package drawstate

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// MultiDraw against a real daemon: the same rules as the Python client's MultiDraw.

var (
	gold   = Prize{ID: "gold", Name: "Gold Dragon", Probability: 0.1, Value: 500}
	bronze = Prize{ID: "bronze", Name: "Bronze Cat", Probability: 0.6, Value: 20}
)

func TestMultiDrawRecordsEachDrawAndCompletes(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	metadata := map[string]string{"user_id": "1001", "price_paid": "1600"}
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 4, StartOptions{Metadata: metadata})
	must(t, err)
	if draw.Version() != 1 || draw.NextDrawIndex() != 1 || draw.Remaining() != 4 {
		t.Fatalf("after start: %+v", draw.State())
	}
	for i, record := range []func() (int, error){
		func() (int, error) { return draw.RecordPrize(ctx, gold) },
		func() (int, error) { return draw.RecordResult(ctx, 77) },
		func() (int, error) { return draw.RecordFailure(ctx, errors.New("inventory timed out")) },
		func() (int, error) { return draw.RecordPrize(ctx, bronze) },
	} {
		index, err := record()
		must(t, err)
		if index != i+1 {
			t.Errorf("draw %d recorded as %d", i+1, index)
		}
	}
	if _, err := draw.RecordResult(ctx, 1); err == nil {
		t.Error("a fifth draw of four was recorded")
	}
	stored, err := c.Load(ctx, draw.LockKey(), draw.OperationID())
	must(t, err)
	if stored == nil || !reflect.DeepEqual(*stored, draw.State()) || stored.Version != 5 {
		t.Fatalf("stored %+v\nsession %+v", stored, draw.State())
	}
	final, err := draw.Complete(ctx, false)
	must(t, err)
	if final.CompletedCount != 3 || len(final.Errors) != 1 || final.Errors[0].DrawIndex != 3 ||
		final.Errors[0].ErrorMessage != "inventory timed out" ||
		!reflect.DeepEqual(final.Metadata, metadata) || draw.Closed() != "complete" {
		t.Errorf("final %+v", final)
	}
	if gone, err := c.Load(ctx, draw.LockKey(), draw.OperationID()); err != nil || gone != nil {
		t.Errorf("a completed operation loads as %+v, %v", gone, err)
	}
}

func TestStartIsCreateOnly(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	first, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{})
	must(t, err)
	_, err = StartMultiDraw(ctx, c, first.LockKey(), 3, StartOptions{OperationID: first.OperationID()})
	wantCode(t, err, ErrVersionConflict)
}

func TestCompleteRefusesWhileDrawsRemainUnlessPartial(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{})
	must(t, err)
	_, err = draw.RecordResult(ctx, 1)
	must(t, err)
	if _, err := draw.Complete(ctx, false); err == nil {
		t.Fatal("completed with two draws to make")
	}
	partial, err := draw.Complete(ctx, true)
	must(t, err)
	if partial.CompletedCount != 1 {
		t.Errorf("partial %+v", partial)
	}
}

func TestResumeContinuesAnInterruptedOperationFromTheNextDraw(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	crashed, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{})
	must(t, err)
	_, err = crashed.RecordResult(ctx, 5)
	must(t, err)
	// The process "dies" here: a new one resumes.
	resumed, err := ResumeMultiDraw(ctx, c, crashed.LockKey(), "", ResumeOptions{})
	must(t, err)
	if resumed == nil || resumed.OperationID() != crashed.OperationID() || resumed.NextDrawIndex() != 2 ||
		resumed.Version() != crashed.Version()+1 {
		t.Fatalf("resumed %+v", resumed)
	}
	for !resumed.Finished() {
		_, err := resumed.RecordResult(ctx, 6)
		must(t, err)
	}
	final, err := resumed.Complete(ctx, false)
	must(t, err)
	if !reflect.DeepEqual(final.Results, []int64{5, 6, 6}) {
		t.Errorf("results %v", final.Results)
	}
	none, err := ResumeMultiDraw(ctx, c, crashed.LockKey(), "", ResumeOptions{})
	if err != nil || none != nil {
		t.Errorf("nothing is left to resume: %+v, %v", none, err)
	}
}

func TestOfTwoResumersExactlyOneClaims(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{})
	must(t, err)
	a, err := ResumeMultiDraw(ctx, c, draw.LockKey(), draw.OperationID(), ResumeOptions{NoClaim: true})
	must(t, err)
	b, err := ResumeMultiDraw(ctx, c, draw.LockKey(), draw.OperationID(), ResumeOptions{NoClaim: true})
	must(t, err)
	_, errA := a.Claim(ctx)
	_, errB := b.Claim(ctx)
	if (errA == nil) == (errB == nil) {
		t.Fatalf("claims: %v and %v", errA, errB)
	}
	loser := b
	if errA != nil {
		loser = a
	}
	if !loser.Lost() {
		t.Error("the loser does not know it lost")
	}
	_, err = loser.RecordResult(ctx, 1)
	wantCode(t, err, ErrVersionConflict)
	_, err = loser.Rollback(ctx, "not mine")
	wantCode(t, err, ErrVersionConflict)
}

func TestALaterClaimTakesTheOperationOverFromItsOwner(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	owner, err := StartMultiDraw(ctx, c, lockKey(t), 3, StartOptions{})
	must(t, err)
	_, err = ResumeMultiDraw(ctx, c, owner.LockKey(), owner.OperationID(), ResumeOptions{})
	must(t, err)
	_, err = owner.RecordResult(ctx, 1)
	wantCode(t, err, ErrVersionConflict)
	if !owner.Lost() {
		t.Error("the previous owner still thinks it owns the operation")
	}
}

func TestRollbackRefundsWhatWasNotGrantedAndRepeatsTheSameRefund(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 10, StartOptions{Metadata: map[string]string{"price_paid": "1600"}})
	must(t, err)
	for i := 0; i < 4; i++ {
		_, err := draw.RecordPrize(ctx, gold)
		must(t, err)
	}
	refund, err := draw.Rollback(ctx, "player cancelled")
	must(t, err)
	if refund.Cleanup != "done" || refund.GrantedCount() != 4 || refund.UngrantedCount() != 6 ||
		len(refund.State.PrizeResults) != 4 || refund.State.Metadata["price_paid"] != "1600" {
		t.Fatalf("refund %+v", refund)
	}
	again, err := draw.Rollback(ctx, "again")
	must(t, err)
	if !reflect.DeepEqual(again, refund) {
		t.Errorf("a repeated rollback got %+v", again)
	}
	_, err = draw.RecordPrize(ctx, gold)
	wantCode(t, err, ErrOperationClosed)
}

// Waits for the daemon's outcome-stream contract (final, existed).
func TestTheSessionThatRollsBackPaysTheRefund(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 10, StartOptions{})
	must(t, err)
	refund, err := draw.Rollback(ctx, "cancelled")
	must(t, err)
	if !refund.Final || !refund.Existed {
		t.Errorf("refund: final %v, existed %v", refund.Final, refund.Existed)
	}
	other, err := ResumeMultiDraw(ctx, c, draw.LockKey(), draw.OperationID(), ResumeOptions{})
	if err != nil || other != nil {
		t.Errorf("a rolled-back operation resumes as %+v, %v", other, err)
	}
}

func TestARollbackResentWithTheSessionsTokenGetsTheSameAnswerNotOperationClosed(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 10, StartOptions{})
	must(t, err)
	_, err = draw.RecordPrize(ctx, gold)
	must(t, err)
	// The session's first rollback reached the daemon, and its reply was lost.
	state := draw.State()
	first, err := c.RollbackState(ctx, &state, RollbackOptions{Token: draw.RollbackToken()})
	must(t, err)
	refund, err := draw.Rollback(ctx, "resent")
	must(t, err)
	if !first.Final || !refund.Final || !refund.Existed || refund.GrantedCount() != 1 || refund.UngrantedCount() != 9 {
		t.Errorf("first %+v, the session's resend %+v", first, refund)
	}
}

func TestARollbackTokenStoredBeforeACrashIsTheOneTheNextSessionSends(t *testing.T) {
	c, ctx := newClient(t), ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 10, StartOptions{})
	must(t, err)
	stored := draw.RollbackToken() // kept by the game before it rolls back, then it "crashes"
	next, err := ResumeMultiDraw(ctx, c, draw.LockKey(), draw.OperationID(), ResumeOptions{NoClaim: true,
		SessionOptions: SessionOptions{RollbackToken: stored}})
	must(t, err)
	refund, err := next.Rollback(ctx, "after a crash")
	must(t, err)
	if next.RollbackToken() != stored || refund.Token != stored || !refund.Final {
		t.Fatalf("token %s, refund %+v; stored %s", next.RollbackToken(), refund, stored)
	}
	// The daemon knows that token as the rollback's caller: a resend with it is answered alike.
	again, err := c.Rollback(ctx, draw.LockKey(), draw.OperationID(), RollbackOptions{Token: stored})
	must(t, err)
	if !again.Final || !again.Existed {
		t.Errorf("a resend with the stored token: %+v", again)
	}
	_, err = c.Rollback(ctx, draw.LockKey(), draw.OperationID(), RollbackOptions{Token: NewToken()})
	wantCode(t, err, ErrOperationClosed)
}

func TestARollbackWhileRedisIsUnreachableIsDeferredAndNotTheCallersToRefund(t *testing.T) {
	needDaemon(t)
	d, err := startOwnDaemon(t)
	must(t, err)
	// The daemon spends the call's deadline on Redis before deferring: keep it short.
	c := NewClient(Options{SocketPath: d.Socket, Timeout: time.Second})
	defer c.Close()
	ctx := ctxFor(t)
	draw, err := StartMultiDraw(ctx, c, lockKey(t), 10, StartOptions{})
	must(t, err)
	_, err = draw.RecordPrize(ctx, gold)
	must(t, err)
	d.StopRedis()
	refund, err := draw.Rollback(ctxWithoutDeadline(t), "redis down")
	must(t, err)
	if refund.Final || refund.Existed || refund.Cleanup != "deferred" || refund.GrantedCount() != 1 {
		t.Errorf("a deferred rollback: %+v", refund)
	}
}
