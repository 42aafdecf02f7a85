package drawstate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// HeaderSize is the frame's length prefix: a big-endian uint32 counting the body.
const HeaderSize = 4

// MaxFrameBytes is the largest body either side accepts (1 MiB, inclusive).
const MaxFrameBytes = 1 << 20

// envelope opens every request, in the order docs/protocol.md §11 shows.
type envelope struct {
	ID         int64  `msgpack:"id"`
	Op         string `msgpack:"op"`
	DeadlineMs int64  `msgpack:"deadline_ms"`
}

func (e *envelope) head() *envelope { return e }

// request is any op's request struct: its envelope is filled at each send.
type request interface{ head() *envelope }

type pingRequest struct{ envelope }

type statsRequest struct{ envelope }

type saveRequest struct {
	envelope
	State         *DrawState `msgpack:"state"`
	Token         string     `msgpack:"token"`
	ExpectVersion *int64     `msgpack:"expect_version,omitempty"`
	TTLs          int64      `msgpack:"ttl_s,omitempty"`
	Durability    string     `msgpack:"durability,omitempty"`
}

type loadRequest struct {
	envelope
	LockKey     string `msgpack:"lock_key"`
	OperationID string `msgpack:"operation_id,omitempty"`
}

type rollbackRequest struct {
	envelope
	State       *DrawState `msgpack:"state,omitempty"`
	LockKey     string     `msgpack:"lock_key,omitempty"`
	OperationID string     `msgpack:"operation_id,omitempty"`
	Reason      string     `msgpack:"reason,omitempty"`
	Token       string     `msgpack:"token,omitempty"`
	RefundBy    RefundBy   `msgpack:"refund_by,omitempty"`
	// ExpectVersion: nil sends no check; a pointer to 0 means nothing stored.
	ExpectVersion *int64 `msgpack:"expect_version,omitempty"`
}

type completeRequest struct {
	envelope
	LockKey     string `msgpack:"lock_key"`
	OperationID string `msgpack:"operation_id"`
}

type pendingRequest struct {
	envelope
	LockKey    string `msgpack:"lock_key,omitempty"`
	OlderThanS *int64 `msgpack:"older_than_s,omitempty"`
	Limit      int    `msgpack:"limit,omitempty"`
	Cursor     string `msgpack:"cursor,omitempty"`
}

type auditRequest struct {
	envelope
	LockKey string `msgpack:"lock_key,omitempty"`
	Since   *int64 `msgpack:"since,omitempty"`
	Limit   int    `msgpack:"limit,omitempty"`
	Cursor  string `msgpack:"cursor,omitempty"`
}

type outcomesRequest struct {
	envelope
	Group       string `msgpack:"group"`
	Consumer    string `msgpack:"consumer"`
	Limit       int    `msgpack:"limit,omitempty"`
	BlockMs     *int64 `msgpack:"block_ms,omitempty"`
	ClaimIdleMs int64  `msgpack:"claim_idle_ms,omitempty"`
}

type ackRequest struct {
	envelope
	Group string   `msgpack:"group"`
	IDs   []string `msgpack:"ids"`
}

// replyHead opens every reply; each op's reply embeds it.
type replyHead struct {
	ID    *int64     `msgpack:"id"`
	OK    bool       `msgpack:"ok"`
	Error *wireError `msgpack:"error,omitempty"`
}

func (r *replyHead) head() *replyHead { return r }

type reply interface{ head() *replyHead }

type pingReply struct {
	replyHead
	Redis   string `msgpack:"redis,omitempty"`
	Version string `msgpack:"version,omitempty"`
}

type saveReply struct {
	replyHead
	Version  int64  `msgpack:"version,omitempty"`
	TTLs     int64  `msgpack:"ttl_s,omitempty"`
	Replicas *int64 `msgpack:"replicas,omitempty"`
}

type loadReply struct {
	replyHead
	State *DrawState `msgpack:"state"`
}

type rollbackReply struct {
	replyHead
	State   *DrawState `msgpack:"state"`
	Cleanup string     `msgpack:"cleanup"`
	Final   bool       `msgpack:"final"`
	Existed bool       `msgpack:"existed"`
}

type completeReply struct {
	replyHead
	Existed bool `msgpack:"existed"`
}

type pendingReply struct {
	replyHead
	Items  []PendingItem `msgpack:"items"`
	Cursor *string       `msgpack:"cursor"`
}

type auditReply struct {
	replyHead
	Items  []OutcomeEvent `msgpack:"items"`
	Cursor *string        `msgpack:"cursor"`
}

type outcomesReply struct {
	replyHead
	Items []OutcomeEvent `msgpack:"items"`
}

type ackReply struct {
	replyHead
	Acked int64 `msgpack:"acked"`
}

// normalize turns the unsigned ints loose decoding makes of positive msgpack
// ints into int64 (every integer on the wire is a signed 64-bit value, §3).
func normalize(value any) any {
	switch v := value.(type) {
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v)
		}
	case map[string]any:
		for key, item := range v {
			v[key] = normalize(item)
		}
	case []any:
		for i, item := range v {
			v[i] = normalize(item)
		}
	}
	return value
}

// statsReply keeps every field of the reply, as the daemon sent it.
type statsReply struct {
	replyHead
	Fields map[string]any
}

func (s *statsReply) DecodeMsgpack(d *msgpack.Decoder) error {
	if err := d.Decode(&s.Fields); err != nil {
		return err
	}
	normalize(s.Fields)
	s.OK, _ = s.Fields["ok"].(bool)
	if id, ok := s.Fields["id"].(int64); ok {
		s.ID = &id
	}
	if m, ok := s.Fields["error"].(map[string]any); ok {
		s.Error = &wireError{}
		s.Error.Code, _ = m["code"].(string)
		s.Error.Message, _ = m["message"].(string)
		s.Error.Retryable, _ = m["retryable"].(bool)
		for key, value := range m {
			if key != "code" && key != "message" && key != "retryable" {
				s.Error.Details = append(s.Error.Details, detail{key, value})
			}
		}
	}
	return nil
}

// detail is one extra field of an error map, kept in the order it came.
type detail struct {
	Key   string
	Value any
}

// wireError is a reply's error map: code, message, retryable, then the details.
type wireError struct {
	Code      string
	Message   string
	Retryable bool
	Details   []detail
}

// DecodeMsgpack reads the error map; detail values decode loosely (ints as int64).
func (w *wireError) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		key, err := d.DecodeString()
		if err != nil {
			return err
		}
		switch key {
		case "code":
			w.Code, err = d.DecodeString()
		case "message":
			w.Message, err = d.DecodeString()
		case "retryable":
			w.Retryable, err = d.DecodeBool()
		default:
			var value any
			value, err = d.DecodeInterfaceLoose()
			w.Details = append(w.Details, detail{key, normalize(value)})
		}
		if err != nil {
			return fmt.Errorf("error.%s: %w", key, err)
		}
	}
	return nil
}

// EncodeMsgpack writes the error map back in the daemon's order.
func (w *wireError) EncodeMsgpack(e *msgpack.Encoder) error {
	if err := e.EncodeMapLen(3 + len(w.Details)); err != nil {
		return err
	}
	for _, field := range []struct {
		key   string
		value any
	}{{"code", w.Code}, {"message", w.Message}, {"retryable", w.Retryable}} {
		if err := e.EncodeString(field.key); err != nil {
			return err
		}
		if err := e.Encode(field.value); err != nil {
			return err
		}
	}
	for _, d := range w.Details {
		if err := e.EncodeString(d.Key); err != nil {
			return err
		}
		if err := e.Encode(d.Value); err != nil {
			return err
		}
	}
	return nil
}

// wireBool reads a bool sent as a bool or, by older daemons, as the int 0 or 1.
type wireBool bool

func (b *wireBool) DecodeMsgpack(d *msgpack.Decoder) error {
	value, err := d.DecodeInterfaceLoose()
	if err != nil {
		return err
	}
	switch v := value.(type) {
	case bool:
		*b = wireBool(v)
	case int64:
		*b = v != 0
	case uint64:
		*b = v != 0
	case nil:
		*b = false
	default:
		return fmt.Errorf("msgpack: %T is not a bool", value)
	}
	return nil
}

// encodeFrame is one request's frame: the length prefix and the msgpack body.
// Ints take their smallest encoding and map keys are sorted (metadata), as
// the Python client writes them, so equal requests are equal bytes.
func encodeFrame(v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(make([]byte, HeaderSize))
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	frame := buf.Bytes()
	body := len(frame) - HeaderSize
	if body > MaxFrameBytes {
		return nil, newError(CodeFrameTooLarge, fmt.Sprintf("request body is %d bytes, over %d", body, MaxFrameBytes), nil)
	}
	binary.BigEndian.PutUint32(frame, uint32(body))
	return frame, nil
}

// decodeBody reads a reply body into v, decoding untyped values loosely (ints as int64).
func decodeBody(body []byte, v any) error {
	r := bytes.NewReader(body) // a ByteScanner: the decoder reads it directly, without buffering ahead
	dec := msgpack.NewDecoder(r)
	dec.UseLooseInterfaceDecoding(true)
	if err := dec.Decode(v); err != nil {
		return err
	}
	if r.Len() != 0 {
		return fmt.Errorf("%d trailing bytes after the reply map", r.Len())
	}
	return nil
}

// peekID reads only a reply's id (nil: the daemon could not read the request's id).
func peekID(body []byte) (*int64, error) {
	var head struct {
		ID *int64 `msgpack:"id"`
	}
	if err := decodeBody(body, &head); err != nil {
		return nil, err
	}
	return head.ID, nil
}
