package main

// The engine-format documents committed under tests/fixtures/go_engine. Most
// are written by encoding/json from the engine's own struct, so they carry its
// exact escapes and number forms; a few are hand-written, because the engine's
// writer never produces them but its reader accepts them (fields omitted, a
// null prize, an unknown field) or because Redis may hold them anyway (a
// truncated value).

// Expected outcomes of converting a fixture into the sidecar's layout.
const (
	Importable = "importable"
	Refused    = "refused"
	NotEngine  = "not_engine" // the sidecar's own state under the same prefix: left alone
)

// Fixture is one document, the key it sits at, and what the import must make of it.
type Fixture struct {
	Name        string
	LockKey     string // the lock key in the Redis key
	OperationID string // the key's last segment
	Key         string // set only when the key is not StateKey(LockKey, OperationID)
	State       *DrawState
	Raw         string // a hand-written document, instead of State
	Expect      string
	Field       string // for Refused: the field the refusal names
	Reason      string // for Refused: why, in the operator's terms
	Covers      string
}

const (
	t0 = int64(1703123456) // 2023-12-21T01:50:56Z
	t1 = int64(1703123789)
	// maxExact is 2^53-1: the largest integer every JSON peer reads exactly.
	maxExact = int64(1)<<53 - 1
)

func sample() *DrawState {
	return &DrawState{
		LockKey: "user_123_daily", TotalCount: 10, CompletedCount: 3,
		Results:      []int64{42, 17, 89},
		PrizeResults: []Prize{{ID: "gold", Name: "Gold", Probability: 0.1, Value: 500}},
		Errors:       []DrawError{{DrawIndex: 4, ErrorMessage: "rng timeout", Timestamp: 1703123600}},
		StartTime:    t0, LastUpdateTime: t1,
	}
}

// with returns sample() changed by edit, under lockKey.
func with(lockKey string, edit func(*DrawState)) *DrawState {
	state := sample()
	state.LockKey = lockKey
	if edit != nil {
		edit(state)
	}
	return state
}

// Fixtures lists every fixture, in the order the manifest lists them.
func Fixtures() []Fixture {
	return []Fixture{
		{Name: "issue_sample", LockKey: "user_123_daily", OperationID: "op_20231221_0001", State: sample(),
			Expect: Importable, Covers: "the document the issue shows, byte for byte"},
		{Name: "html_escapes", LockKey: "guild<A&B>:member:7", OperationID: "op_20231221_0002",
			State: with("guild<A&B>:member:7", func(s *DrawState) {
				s.PrizeResults[0].Name = `<Rare> & "Shiny"`
				s.Errors[0].ErrorMessage = "<timeout> & retry"
			}),
			Expect: Importable, Covers: `\u003c \u003e \u0026 escapes, and colons inside the lock key`},
		{Name: "line_separators", LockKey: "user_2028", OperationID: "op_20231221_0003",
			State: with("user_2028", func(s *DrawState) {
				s.PrizeResults[0].Name = "Gold\u2028Dragon"
				s.Errors[0].ErrorMessage = "line one\u2029line two"
			}),
			Expect: Importable, Covers: `\u2028 and \u2029 escapes in a prize name and an error message`},
		{Name: "integral_floats", LockKey: "user_floats", OperationID: "op_20231221_0004",
			State: with("user_floats", func(s *DrawState) {
				s.CompletedCount = 4
				s.Results = nil
				s.Errors = nil
				s.PrizeResults = []Prize{
					{ID: "sure", Name: "Sure thing", Probability: 1.0, Value: 1},
					{ID: "never", Name: "Never", Probability: 0.0, Value: 0},
					{ID: "half", Name: "Half", Probability: 0.5, Value: -3},
					{ID: "tiny", Name: "Tiny", Probability: 1e-7, Value: maxExact},
				}
			}),
			Expect: Importable, Covers: "probability 1.0 written as 1, 0.0 as 0, 1e-7 as 1e-7; an int64 value at 2^53-1"},
		{Name: "nil_slices", LockKey: "user_nil", OperationID: "op_20231221_0005",
			State:  &DrawState{LockKey: "user_nil", TotalCount: 10, StartTime: t0, LastUpdateTime: t0},
			Expect: Importable, Covers: "nil slices written as null"},
		{Name: "empty_slices", LockKey: "user_empty", OperationID: "op_20231221_0006",
			State: &DrawState{LockKey: "user_empty", TotalCount: 10, Results: []int64{},
				PrizeResults: []Prize{}, Errors: []DrawError{}, StartTime: t0, LastUpdateTime: t0},
			Expect: Importable, Covers: "empty slices written as []"},
		{Name: "omitted_lists", LockKey: "user_omitted", OperationID: "op_20231221_0007",
			Raw: `{"lock_key":"user_omitted","total_count":5,"completed_count":0,"start_time":1703123456,` +
				`"last_update_time":1703123456}`,
			Expect: Importable, Covers: "results, prize_results and errors left out (hand-written)"},
		{Name: "unicode_lock_key", LockKey: "玩家:42", OperationID: "op_20231221_0008",
			State:  with("玩家:42", func(s *DrawState) { s.Results = []int64{-maxExact, 0, maxExact} }),
			Expect: Importable, Covers: "a non-ASCII lock key written as raw UTF-8; results at ±(2^53-1)"},
		{Name: "all_draws_made", LockKey: "user_done", OperationID: "op_20231221_0009",
			State: with("user_done", func(s *DrawState) {
				s.TotalCount, s.CompletedCount, s.Errors = 3, 3, nil
			}),
			Expect: Importable, Covers: "every draw made, never completed: imported as pending, for complete or rollback"},

		{Name: "last_update_time_zero", LockKey: "user_lut0", OperationID: "op_20231221_0101",
			State: with("user_lut0", func(s *DrawState) { s.LastUpdateTime = 0 }), Expect: Refused,
			Field: "last_update_time", Reason: "last_update_time 0 is before start_time"},
		{Name: "start_time_zero", LockKey: "user_st0", OperationID: "op_20231221_0102",
			State: with("user_st0", func(s *DrawState) { s.StartTime = 0 }), Expect: Refused,
			Field: "start_time", Reason: "start_time 0 (never set)"},
		{Name: "null_prize", LockKey: "user_nullprize", OperationID: "op_20231221_0103",
			Raw: `{"lock_key":"user_nullprize","total_count":10,"completed_count":2,"results":null,` +
				`"prize_results":[{"id":"gold","name":"Gold","probability":0.1,"value":500},null],` +
				`"errors":null,"start_time":1703123456,"last_update_time":1703123789}`,
			Expect: Refused, Field: "prize_results[1]",
			Reason: "a null prize (the engine reads it as an empty prize; hand-written)"},
		{Name: "total_count_over_limit", LockKey: "user_big", OperationID: "op_20231221_0104",
			State: with("user_big", func(s *DrawState) { s.TotalCount = 10001 }), Expect: Refused,
			Field: "total_count", Reason: "total_count 10001 is over the 10,000 cap"},
		{Name: "results_beyond_2_53", LockKey: "user_huge", OperationID: "op_20231221_0105",
			State:  with("user_huge", func(s *DrawState) { s.Results = []int64{42, maxExact + 2, 89} }),
			Expect: Refused, Field: "results[1]", Reason: "a result beyond ±(2^53-1)"},
		{Name: "braces_in_lock_key", LockKey: "user_{42}", OperationID: "op_20231221_0106",
			State: with("user_{42}", nil), Expect: Refused,
			Field: "lock_key", Reason: "braces in the lock key (they would be a Redis Cluster hash tag)"},
		{Name: "lock_key_with_paragraph_separator", LockKey: "user\u2029x", OperationID: "op_20231221_0107",
			State: with("user\u2029x", nil), Expect: Refused,
			Field: "lock_key", Reason: "a lock key with an unprintable character (U+2029)"},
		{Name: "draw_index_zero", LockKey: "user_idx0", OperationID: "op_20231221_0108",
			State: with("user_idx0", func(s *DrawState) { s.Errors[0].DrawIndex = 0 }), Expect: Refused,
			Field: "errors[0].draw_index", Reason: "draw_index 0 (draws are numbered from 1)"},
		{Name: "lock_key_differs_from_key", LockKey: "user_a", OperationID: "op_20231221_0109",
			State: with("user_b", nil), Expect: Refused,
			Field: "lock_key", Reason: "the document's lock_key is not the key's"},
		{Name: "operation_id_with_a_dot", LockKey: "user_dot", OperationID: "op.20231221.0110",
			State: with("user_dot", nil), Expect: Refused,
			Field: "operation_id", Reason: "the key's operation id holds a character outside A-Z a-z 0-9 _ -"},
		{Name: "missing_start_time", LockKey: "user_nostart", OperationID: "op_20231221_0111",
			Raw: `{"lock_key":"user_nostart","total_count":5,"completed_count":0,"results":null,` +
				`"prize_results":null,"errors":null,"last_update_time":1703123456}`,
			Expect: Refused, Field: "start_time",
			Reason: "start_time left out (the engine reads it as 0; hand-written)"},
		{Name: "unknown_field", LockKey: "user_extra", OperationID: "op_20231221_0112",
			Raw: `{"lock_key":"user_extra","total_count":5,"completed_count":0,"results":null,` +
				`"prize_results":null,"errors":null,"start_time":1703123456,"last_update_time":1703123456,` +
				`"user_id":"42"}`,
			Expect: Refused, Field: "user_id",
			Reason: "a field the engine's struct does not have (the engine ignores it; hand-written)"},
		{Name: "truncated_document", LockKey: "user_cut", OperationID: "op_20231221_0113",
			Raw: `{"lock_key":"user_cut","total_count":5,"completed_co`, Expect: Refused, Field: "document",
			Reason: "not JSON (the engine cannot read it either; hand-written)"},

		{Name: "sidecar_state", LockKey: "player:9", OperationID: "20240101_000000_0000abcd",
			Key: "lottery:state:{player:9}:20240101_000000_0000abcd",
			Raw: `{"lock_key":"player:9","operation_id":"20240101_000000_0000abcd","total_count":10,` +
				`"completed_count":1,"results":[7],"start_time":1704067200,"last_update_time":1704067260,` +
				`"version":2,"_token":"a1b2c3d4","_expires":1704070860000}`,
			Expect: NotEngine, Covers: "the sidecar's own state under the same prefix: not the engine's, left alone"},
	}
}

// RedisKey is the key the fixture's document sits at.
func (f Fixture) RedisKey() string {
	if f.Key != "" {
		return f.Key
	}
	return StateKey(f.LockKey, f.OperationID)
}
