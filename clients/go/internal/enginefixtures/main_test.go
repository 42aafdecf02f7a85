package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixturesDir is tests/fixtures/go_engine, from this package's directory.
var fixturesDir = filepath.Join("..", "..", "..", "..", "tests", "fixtures", "go_engine")

// issueSample is the document issue 14 shows, as the engine stored it.
const issueSample = `{"lock_key":"user_123_daily","total_count":10,"completed_count":3,"results":[42,17,89],` +
	`"prize_results":[{"id":"gold","name":"Gold","probability":0.1,"value":500}],` +
	`"errors":[{"draw_index":4,"error_message":"rng timeout","timestamp":1703123600}],` +
	`"start_time":1703123456,"last_update_time":1703123789}`

func TestEngineStructWritesTheIssueSampleByteForByte(t *testing.T) {
	doc, err := json.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != issueSample {
		t.Fatalf("engine struct writes\n%s\nthe issue shows\n%s", doc, issueSample)
	}
}

func TestCommittedFixturesAreWhatTheGeneratorWrites(t *testing.T) {
	files, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := filepath.Glob(filepath.Join(fixturesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(committed) != len(files) {
		t.Errorf("%d files committed, the generator writes %d: run `go run ./internal/enginefixtures write %s`",
			len(committed), len(files), fixturesDir)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(fixturesDir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the generator writes now", name)
		}
	}
}

func TestGoEscapesTheCharactersTheFixturesCover(t *testing.T) {
	files, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	for file, escape := range map[string]string{
		"html_escapes.json":    `guild\u003cA\u0026B\u003e:member:7`,
		"line_separators.json": `Gold\u2028Dragon`,
		"integral_floats.json": `"probability":1,`,
		"nil_slices.json":      `"results":null,"prize_results":null,"errors":null`,
		"empty_slices.json":    `"results":[],"prize_results":[],"errors":[]`,
	} {
		if !strings.Contains(string(files[file]), escape) {
			t.Errorf("%s does not hold %s: %s", file, escape, files[file])
		}
	}
}

func TestEngineReadsEveryFixtureButTheTruncatedOne(t *testing.T) {
	for _, fixture := range Fixtures() {
		doc, _, err := fixture.Document()
		if err != nil {
			t.Fatal(err)
		}
		_, err = EngineDecode(doc)
		if (err == nil) == (fixture.Name == "truncated_document") {
			t.Errorf("%s: engine decode error %v", fixture.Name, err)
		}
	}
}

func TestDecodeReadsSidecarDocumentsIntoTheEngineStruct(t *testing.T) {
	stored := `{"lock_key":"player:9","operation_id":"20240101_000000_0000abcd","total_count":10,` +
		`"completed_count":1,"results":[7],"start_time":1704067200,"last_update_time":1704067260,` +
		`"metadata":{"user_id":"9"},"version":2,"_token":"a1b2c3d4","_expires":1704070860000}`
	var out bytes.Buffer
	if err := decode(strings.NewReader(stored+"\n\n{not json\n"), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per document, got %q", out.String())
	}
	var first, second decoded
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	want := DrawState{LockKey: "player:9", TotalCount: 10, CompletedCount: 1, Results: []int64{7},
		StartTime: 1704067200, LastUpdateTime: 1704067260}
	if first.State == nil || first.State.LockKey != want.LockKey || first.State.TotalCount != want.TotalCount ||
		len(first.State.Results) != 1 || first.State.Results[0] != 7 || first.State.LastUpdateTime != want.LastUpdateTime {
		t.Errorf("decoded %+v, want %+v", first.State, want)
	}
	if second.Error == "" || second.State != nil {
		t.Errorf("a broken line must report an error, got %+v", second)
	}
}
