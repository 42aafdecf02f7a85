package drawstate

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Prize is one prize drawn: what the player got, for display and refunds.
// A loaded Probability may have been sent as an int (0 or 1); it reads as a float here.
type Prize struct {
	ID          string  `msgpack:"id" json:"id"`
	Name        string  `msgpack:"name" json:"name"`
	Probability float64 `msgpack:"probability" json:"probability"`
	Value       int64   `msgpack:"value" json:"value"`
}

// DrawError is a draw that failed: it counts against TotalCount but granted nothing.
type DrawError struct {
	DrawIndex    int    `msgpack:"draw_index" json:"draw_index"`
	ErrorMessage string `msgpack:"error_message" json:"error_message"`
	Timestamp    int64  `msgpack:"timestamp" json:"timestamp"`
}

// DrawState is the progress of one multi-draw operation (docs/protocol.md §8).
// Fields are in the order the wire and the stored JSON use; empty lists and
// metadata are left out, as the daemon does. Version is set by the daemon.
type DrawState struct {
	LockKey        string            `msgpack:"lock_key" json:"lock_key"`
	OperationID    string            `msgpack:"operation_id" json:"operation_id"`
	TotalCount     int               `msgpack:"total_count" json:"total_count"`
	CompletedCount int               `msgpack:"completed_count" json:"completed_count"`
	Results        []int64           `msgpack:"results,omitempty" json:"results,omitempty"`
	PrizeResults   []Prize           `msgpack:"prize_results,omitempty" json:"prize_results,omitempty"`
	Errors         []DrawError       `msgpack:"errors,omitempty" json:"errors,omitempty"`
	StartTime      int64             `msgpack:"start_time" json:"start_time"`
	LastUpdateTime int64             `msgpack:"last_update_time" json:"last_update_time"`
	Version        int64             `msgpack:"version,omitempty" json:"version,omitempty"`
	Metadata       map[string]string `msgpack:"metadata,omitempty" json:"metadata,omitempty"`
}

// Clone returns an independent copy: its lists and metadata can change without touching s.
func (s DrawState) Clone() DrawState {
	c := s
	c.Results = append([]int64(nil), s.Results...)
	c.PrizeResults = append([]Prize(nil), s.PrizeResults...)
	c.Errors = append([]DrawError(nil), s.Errors...)
	if s.Metadata != nil {
		c.Metadata = make(map[string]string, len(s.Metadata))
		for k, v := range s.Metadata {
			c.Metadata[k] = v
		}
	}
	return c
}

// NextDrawIndex is the 1-based index of the draw that comes next (made and failed draws both count).
func (s DrawState) NextDrawIndex() int { return s.CompletedCount + len(s.Errors) + 1 }

// Finished reports whether every draw is made (granted or failed).
func (s DrawState) Finished() bool { return s.CompletedCount+len(s.Errors) >= s.TotalCount }

// NewOperationID makes an id "YYYYMMDD_HHMMSS_<8 hex>" (UTC), as the Python client does.
func NewOperationID(now time.Time) string {
	return fmt.Sprintf("%s_%s", now.UTC().Format("20060102_150405"), randomHex(4))
}

// NewToken makes a save or rollback token: 16 hex chars, within the 1-64 [A-Za-z0-9_-] the daemon takes.
func NewToken() string { return randomHex(8) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("drawstate: no randomness for an id: %v", err)) // the OS source never fails in practice
	}
	return hex.EncodeToString(b)
}

// PingResult is ping's reply.
type PingResult struct {
	Redis   string // "up" or "down"
	Version string // the daemon's version
}

// SaveResult is save's reply.
type SaveResult struct {
	Version int64 // the stored version after the save (the earlier save's, on a replay)
	TTLs    int64 // the TTL that applied, in seconds
	// Replicas that acknowledged; set only for durability "replicated".
	Replicas *int64
}

// RollbackResult is rollback's reply.
type RollbackResult struct {
	// State is what the rollback removed (cleanup "done"), the state the
	// request carried (cleanup "deferred"), or nil when nothing was stored.
	State *DrawState
	// Cleanup is "done" or "deferred" (Redis unreachable: applied later).
	Cleanup string
	// Final is true when this caller rolled the operation back and pays the
	// refund; false when it must not refund: the rollback was deferred, or its
	// refund was given to the outcome stream, whose event a refund worker pays.
	// Daemons older than the outcome-stream contract do not send it (false).
	Final bool
	// Existed says whether a state was stored when the rollback was applied.
	Existed bool
	// Token is the token the rollback went out with: resend with it to get the same answer.
	Token string
}

// PendingItem is one live operation in a pending page.
type PendingItem struct {
	LockKey        string `msgpack:"lock_key"`
	OperationID    string `msgpack:"operation_id"`
	CompletedCount int    `msgpack:"completed_count"`
	TotalCount     int    `msgpack:"total_count"`
	Version        int64  `msgpack:"version"`
	LastUpdateTime int64  `msgpack:"last_update_time"`
	AgeS           int64  `msgpack:"age_s"`
}

// PendingPage is one page of pending; Cursor is "" when the listing is done.
type PendingPage struct {
	Items  []PendingItem
	Cursor string
}

// AuditPage is one page of audit; Cursor is "" when the listing is done.
type AuditPage struct {
	Items  []OutcomeEvent
	Cursor string
}
