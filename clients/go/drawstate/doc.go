// Package drawstate is the Go client of drawstate, the local sidecar daemon
// that keeps multi-draw ("10-pull") gacha and lottery progress safe in Redis.
//
// A game process talks to its drawstated over a Unix socket (docs/protocol.md
// in the drawstate repository is the wire contract). Client sends the ops;
// MultiDraw drives one multi-draw operation end to end with the same rules as
// the Python client's MultiDraw: start it (create-only), record each draw
// before granting it, then complete it, or resume it after a crash, or roll it
// back and refund what it had not granted.
//
//	client := drawstate.NewClient(drawstate.Options{}) // $DRAWSTATE_SOCKET, else the default path
//	defer client.Close()
//	draw, err := drawstate.StartMultiDraw(ctx, client, "player:1001", 10, drawstate.StartOptions{
//		Metadata: map[string]string{"user_id": "1001", "price_paid": "1600"},
//	})
//	for err == nil && !draw.Finished() {
//		_, err = draw.RecordResult(ctx, rng.Int63n(100)) // saved: now grant it
//	}
//	if err == nil {
//		_, err = draw.Complete(ctx, false)
//	}
//
// Errors are *Error values carrying the wire code; match them with errors.Is
// against the sentinels (ErrVersionConflict, ErrOperationClosed, ...) and
// retry only when IsRetryable says so, always with the same token.
// ErrSidecarUnavailable means nothing was sent; ErrSidecarTimeout (which also
// matches ErrSidecarUnavailable) means the request went out and may have taken
// effect; ErrOutcomeUnknown means a save or rollback is in doubt after MultiDraw
// resent it up to its resend deadline: grant or refund nothing for it until a
// resend answers.
//
// Refund workers read the outcome stream with EachOutcome, which acknowledges an
// event only once its handler returned nil, and pay the events whose
// OutcomeEvent.RefundOwed is true.
package drawstate
