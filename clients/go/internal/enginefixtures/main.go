// Command enginefixtures writes the Go engine's DrawState documents, exactly as
// encoding/json writes them, as fixtures for drawstate's import of the engine's
// states; and reads documents as drawstate stores them back into the engine's
// struct, to show what the engine would make of them.
//
//	go run ./internal/enginefixtures write ../../tests/fixtures/go_engine
//	go run ./internal/enginefixtures decode < documents.jsonl
//
// write puts each document in <name>.json (the exact bytes the engine would
// store, no trailing newline) and lists them in manifest.json with their Redis
// key and the outcome the import must reach. decode reads one JSON document per
// line and prints one line per document: {"state": <what the engine decoded,
// re-encoded by the engine>} or {"error": "<why the engine could not read it>"}.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// MaxDocumentBytes bounds one line of decode's input: drawstate's state cap
// (512 KiB) plus room for its internal fields.
const MaxDocumentBytes = 1 << 20

// ManifestEntry describes one fixture file.
type ManifestEntry struct {
	Name          string `json:"name"`
	File          string `json:"file"`
	Key           string `json:"key"`
	Origin        string `json:"origin"`
	EngineDecodes bool   `json:"engine_decodes"`
	Expect        string `json:"expect"`
	Field         string `json:"field,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Covers        string `json:"covers,omitempty"`
}

// Manifest is manifest.json.
type Manifest struct {
	Note     string          `json:"note"`
	Prefix   string          `json:"prefix"`
	Fixtures []ManifestEntry `json:"fixtures"`
}

// Document is the fixture's bytes: the engine's encoding/json of its State, or the hand-written Raw.
func (f Fixture) Document() ([]byte, string, error) {
	if f.State == nil {
		return []byte(f.Raw), "hand-written", nil
	}
	doc, err := json.Marshal(f.State)
	return doc, "encoding/json", err
}

// Build returns every fixture's file content by file name, manifest.json included.
func Build() (map[string][]byte, error) {
	files := map[string][]byte{}
	manifest := Manifest{
		Note: "Written by clients/go/internal/enginefixtures (go run ./internal/enginefixtures write " +
			"../../tests/fixtures/go_engine); each file holds the exact bytes the Go engine would keep at key.",
		Prefix: EnginePrefix,
	}
	for _, fixture := range Fixtures() {
		doc, origin, err := fixture.Document()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fixture.Name, err)
		}
		_, decodeErr := EngineDecode(doc)
		file := fixture.Name + ".json"
		files[file] = doc
		manifest.Fixtures = append(manifest.Fixtures, ManifestEntry{
			Name: fixture.Name, File: file, Key: fixture.RedisKey(), Origin: origin,
			EngineDecodes: decodeErr == nil, Expect: fixture.Expect, Field: fixture.Field,
			Reason: fixture.Reason, Covers: fixture.Covers,
		})
	}
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false) // keys such as guild<A&B> stay readable in the manifest
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(manifest); err != nil {
		return nil, err
	}
	files["manifest.json"] = out.Bytes()
	return files, nil
}

func write(dir string) error {
	files, err := Build()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

type decoded struct {
	State *DrawState `json:"state,omitempty"`
	Error string     `json:"error,omitempty"`
}

// decode reads documents, one per line, the way the engine reads its states.
func decode(in io.Reader, out io.Writer) error {
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 0, 64*1024), MaxDocumentBytes)
	encoder := json.NewEncoder(out)
	for scanner.Scan() {
		line := bytes.TrimSpace(scanner.Bytes())
		if len(line) == 0 {
			continue
		}
		result := decoded{}
		state, err := EngineDecode(line)
		if err != nil {
			result.Error = err.Error()
		} else {
			result.State = &state
		}
		if err := encoder.Encode(result); err != nil {
			return err
		}
	}
	return scanner.Err()
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "write":
		err = write(os.Args[2])
	case len(os.Args) == 2 && os.Args[1] == "decode":
		err = decode(os.Stdin, os.Stdout)
	default:
		fmt.Fprintln(os.Stderr, "usage: enginefixtures write <dir> | enginefixtures decode < documents.jsonl")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "enginefixtures:", err)
		os.Exit(1)
	}
}
