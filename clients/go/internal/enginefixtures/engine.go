// The Go lottery engine's DrawState, as it stores it in Redis at
// lottery:state:<lockKey>:<operationId>. Field order and json tags follow the
// documents that engine writes (every field, no omitempty: a nil slice is
// written as null), so encoding/json here writes exactly what the engine wrote.
package main

import (
	"encoding/json"
	"fmt"
)

// EnginePrefix is the engine's key prefix.
const EnginePrefix = "lottery"

// Prize is one prize drawn.
type Prize struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Probability float64 `json:"probability"`
	Value       int64   `json:"value"`
}

// DrawError is a draw that failed.
type DrawError struct {
	DrawIndex    int    `json:"draw_index"`
	ErrorMessage string `json:"error_message"`
	Timestamp    int64  `json:"timestamp"`
}

// DrawState is the engine's progress of one multi-draw operation. It holds no
// operation id (that is in the key), no version and no metadata.
type DrawState struct {
	LockKey        string      `json:"lock_key"`
	TotalCount     int         `json:"total_count"`
	CompletedCount int         `json:"completed_count"`
	Results        []int64     `json:"results"`
	PrizeResults   []Prize     `json:"prize_results"`
	Errors         []DrawError `json:"errors"`
	StartTime      int64       `json:"start_time"`
	LastUpdateTime int64       `json:"last_update_time"`
}

// StateKey is where the engine stores the state of one operation.
func StateKey(lockKey, operationID string) string {
	return fmt.Sprintf("%s:state:%s:%s", EnginePrefix, lockKey, operationID)
}

// EngineDecode reads a document the way the engine does: encoding/json into
// DrawState, unknown fields ignored, a missing field left at its zero value.
func EngineDecode(doc []byte) (DrawState, error) {
	var state DrawState
	err := json.Unmarshal(doc, &state)
	return state, err
}
