package drawstate

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// vectorsFile holds docs/protocol.md §11's frames; the Python tests keep it equal to the document.
var vectorsFile = filepath.Join("..", "..", "..", "tests", "fixtures", "protocol_vectors.json")

type vector struct {
	Name     string          `json:"name"`
	Section  string          `json:"section"`
	FrameHex string          `json:"frame_hex"`
	Decoded  json.RawMessage `json:"decoded"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return file.Vectors
}

// typed is the client's own struct for each vector: requests as the client
// sends them, replies as it reads them.
func typed(name string) any {
	switch name {
	case "ping_request":
		return &pingRequest{}
	case "save_request":
		return &saveRequest{}
	case "load_request":
		return &loadRequest{}
	case "ping_reply":
		return &pingReply{}
	case "save_reply", "version_conflict_reply":
		return &saveReply{}
	case "load_reply":
		return &loadReply{}
	case "frame_too_large_reply":
		return &replyHead{}
	case "outcomes_request":
		return &outcomesRequest{}
	case "outcomes_reply":
		return &outcomesReply{}
	case "ack_request":
		return &ackRequest{}
	case "ack_reply":
		return &ackReply{}
	}
	return nil
}

func (v vector) body(t *testing.T) []byte {
	t.Helper()
	frame, err := hex.DecodeString(v.FrameHex)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint32(frame); int(got) != len(frame)-HeaderSize {
		t.Fatalf("length prefix %d, body %d bytes", got, len(frame)-HeaderSize)
	}
	return frame[HeaderSize:]
}

// asJSON renders a decoded value as canonical JSON (sorted keys), to compare with the vector's.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestVectorsDecodeToTheMapTheProtocolDocShows(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			var got any
			if err := decodeBody(v.body(t), &got); err != nil {
				t.Fatal(err)
			}
			var want any
			dec := json.NewDecoder(bytes.NewReader(v.Decoded))
			dec.UseNumber()
			if err := dec.Decode(&want); err != nil {
				t.Fatal(err)
			}
			if asJSON(t, got) != asJSON(t, want) {
				t.Errorf("decoded %s\nthe doc shows %s", asJSON(t, got), asJSON(t, want))
			}
		})
	}
}

func TestVectorsReencodeByteForByteThroughTheClientsStructs(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			target := typed(v.Name)
			if target == nil {
				t.Fatalf("no client struct for vector %s: add it to typed()", v.Name)
			}
			body := v.body(t)
			if err := decodeBody(body, target); err != nil {
				t.Fatal(err)
			}
			frame, err := encodeFrame(target)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(frame); got != v.FrameHex {
				t.Errorf("re-encoded\n%s\nthe vector is\n%s", got, v.FrameHex)
			}
		})
	}
}

func TestVectorRepliesReadAsTheClientReportsThem(t *testing.T) {
	vectors := map[string]vector{}
	for _, v := range loadVectors(t) {
		vectors[v.Name] = v
	}
	client := NewClient(Options{SocketPath: "/nonexistent"})

	var ping pingReply
	if err := client.decode(vectors["ping_reply"].body(t), &ping); err != nil || ping.Redis != "up" || ping.Version != "0.1.0" {
		t.Errorf("ping reply: %+v, %v", ping, err)
	}
	var save saveReply
	if err := client.decode(vectors["save_reply"].body(t), &save); err != nil || save.Version != 1 || save.TTLs != 3600 {
		t.Errorf("save reply: %+v, %v", save, err)
	}
	var load loadReply
	if err := client.decode(vectors["load_reply"].body(t), &load); err != nil || load.State != nil {
		t.Errorf("load reply: %+v, %v", load, err)
	}

	var conflict saveReply
	err := client.decode(vectors["version_conflict_reply"].body(t), &conflict)
	if !errors.Is(err, ErrVersionConflict) || errors.Is(err, ErrStaleState) || IsRetryable(err) {
		t.Fatalf("version_conflict reply gave %v", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%T is not *Error", err)
	}
	if stored, ok := e.StoredVersion(); !ok || stored != 1 {
		t.Errorf("stored_version %d, %v", stored, ok)
	}

	var tooLarge replyHead
	err = client.decode(vectors["frame_too_large_reply"].body(t), &tooLarge)
	if !errors.Is(err, ErrFrameTooLarge) || tooLarge.ID != nil {
		t.Errorf("frame_too_large reply gave %v, id %v", err, tooLarge.ID)
	}

	var outcomes outcomesReply
	must(t, client.decode(vectors["outcomes_reply"].body(t), &outcomes))
	want := OutcomeEvent{ID: "1796070520770-0", Event: EventRollback, LockKey: "user:42",
		OperationID: "20240101_120000_1a2b3c4d", Time: 1796070520, Reason: "crash", Existed: true,
		RefundedByCaller: true, CompletedCount: 1, TotalCount: 10, FailedDraws: []int{}, Results: []int64{7},
		PrizeResults: []Prize{}, Metadata: map[string]string{}}
	if len(outcomes.Items) != 1 || !reflect.DeepEqual(outcomes.Items[0], want) {
		t.Fatalf("outcomes reply: %+v", outcomes.Items)
	}
	// The vector's event was paid by its rollback caller: nothing is owed to a refund worker.
	if event := outcomes.Items[0]; !event.Terminal() || event.UngrantedCount() != 9 || event.RefundOwed() {
		t.Errorf("terminal %v, ungranted %d, refund owed %v", event.Terminal(), event.UngrantedCount(), event.RefundOwed())
	}
	var ack ackReply
	if err := client.decode(vectors["ack_reply"].body(t), &ack); err != nil || ack.Acked != 1 {
		t.Errorf("ack reply: %+v, %v", ack, err)
	}
}

func TestOutcomesAndAckSendTheFieldsOfTheirVectors(t *testing.T) {
	vectors := map[string]vector{}
	for _, v := range loadVectors(t) {
		vectors[v.Name] = v
	}
	f := startFake(t, func(_ int, req map[string]any) map[string]any {
		if req["op"] == "outcomes" {
			return ok(req, map[string]any{"items": []any{}})
		}
		return ok(req, map[string]any{"acked": int64(1)})
	})
	c := NewClient(Options{SocketPath: f.path})
	defer c.Close()
	c.ids.Store(4) // the vectors' ids: 5, then 6
	ctx := ctxFor(t)
	_, err := c.Outcomes(ctx, OutcomesOptions{Group: "refunds", Consumer: "worker-1", Limit: 10})
	must(t, err)
	_, err = c.Ack(ctx, "refunds", []string{"1796070520770-0"})
	must(t, err)
	seen := f.seen()
	for i, name := range []string{"outcomes_request", "ack_request"} {
		var want map[string]any
		must(t, decodeBody(vectors[name].body(t), &want))
		normalize(want)
		got := seen[i]
		got["deadline_ms"], want["deadline_ms"] = nil, nil // the time left: not the vector's
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the client sent %v, the vector is %v", name, got, want)
		}
	}
}

func TestSaveRequestVectorIsWhatSaveSendsForTheSameState(t *testing.T) {
	var v vector
	for _, candidate := range loadVectors(t) {
		if candidate.Name == "save_request" {
			v = candidate
		}
	}
	state := DrawState{LockKey: "user:42", OperationID: "20240101_120000_1a2b3c4d", TotalCount: 10,
		CompletedCount: 1, Results: []int64{7}, StartTime: 1704110400, LastUpdateTime: 1704110460, Version: 9}
	send := state
	send.Version = 0 // as Save does
	req := &saveRequest{envelope: envelope{ID: 2, Op: "save", DeadlineMs: 1000}, State: &send,
		Token: "a1b2c3d4", ExpectVersion: Expect(0)}
	frame, err := encodeFrame(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(frame); got != v.FrameHex {
		t.Errorf("save sends\n%s\nthe vector is\n%s", got, v.FrameHex)
	}
}

func TestEncoderUsesTheSmallestIntAndSortsMetadata(t *testing.T) {
	state := DrawState{Metadata: map[string]string{"b": "2", "a": "1", "c": "3"}}
	frame, err := encodeFrame(&state)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := msgpack.Unmarshal(frame[HeaderSize:], &decoded); err != nil {
		t.Fatal(err)
	}
	metadataAt := bytes.Index(frame, []byte("metadata"))
	tail := frame[metadataAt:]
	if a, b, c := bytes.Index(tail, []byte{0xa1, 'a'}), bytes.Index(tail, []byte{0xa1, 'b'}), bytes.Index(tail, []byte{0xa1, 'c'}); !(a < b && b < c) {
		t.Errorf("metadata keys not sorted: %x", tail)
	}
	if !bytes.Contains(frame, []byte{0xab, 't', 'o', 't', 'a', 'l', '_', 'c', 'o', 'u', 'n', 't', 0x00}) {
		t.Errorf("total_count 0 is not a positive fixint: %x", frame)
	}
}
