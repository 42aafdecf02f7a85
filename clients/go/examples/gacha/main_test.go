package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/drawstate/drawstate/clients/go/internal/testdaemon"
)

// asMainEnv makes the test binary run the example itself: the test re-executes
// it to get a process it can let crash (SIGKILL) without building anything.
const asMainEnv = "DRAWSTATE_GACHA_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout))
	}
	os.Exit(m.Run())
}

type gacha struct {
	t      *testing.T
	socket string
}

// run runs the example as its own process; killed says whether it died by SIGKILL.
func (g gacha) run(args ...string) (out string, code int, killed bool) {
	g.t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-socket", g.socket}, args...)...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		status := exit.Sys().(syscall.WaitStatus)
		return stdout.String(), exit.ExitCode(), status.Signaled() && status.Signal() == syscall.SIGKILL
	}
	if err != nil {
		g.t.Fatal(err)
	}
	return stdout.String(), 0, false
}

var drawLine = regexp.MustCompile(`(?m)^  draw +(\d+)/10: (.*)$`)

// draws maps each draw line's index to what it granted.
func draws(out string) map[string]string {
	got := map[string]string{}
	for _, match := range drawLine.FindAllStringSubmatch(out, -1) {
		got[match[1]] = match[2]
	}
	return got
}

func startDaemon(t *testing.T) gacha {
	g, _ := startOwnDaemon(t)
	return g
}

// startOwnDaemon also returns the daemon, for a test that stops its Redis.
func startOwnDaemon(t *testing.T) (gacha, *testdaemon.Daemon) {
	d, err := testdaemon.Start()
	if err != nil {
		if errors.Is(err, testdaemon.ErrUnavailable) && !testdaemon.Required() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return gacha{t: t, socket: d.Socket}, d
}

func TestCrashedPullResumesToExactlyWhatAnUninterruptedOneGrants(t *testing.T) {
	g := startDaemon(t)
	whole, code, _ := g.run("-player", "2001", "-seed", "7")
	if code != 0 || !strings.Contains(whole, "completed: granted 10 of 10 draws") {
		t.Fatalf("uninterrupted pull (exit %d):\n%s", code, whole)
	}

	crashed, _, killed := g.run("-player", "2002", "-seed", "7", "-crash-after", "4")
	if !killed || !strings.Contains(crashed, "crashing: SIGKILL after draw 4") || len(draws(crashed)) != 4 {
		t.Fatalf("the pull did not crash after draw 4 (killed %v):\n%s", killed, crashed)
	}
	resumed, code, _ := g.run("-player", "2002", "-seed", "7", "-resume")
	if code != 0 || !strings.Contains(resumed, "at draw 5/10") || !strings.Contains(resumed, "completed: granted 10 of 10") {
		t.Fatalf("resume (exit %d):\n%s", code, resumed)
	}
	joined := draws(crashed)
	for index, granted := range draws(resumed) {
		joined[index] = granted
	}
	if want := draws(whole); len(joined) != 10 || !mapsEqual(joined, want) {
		t.Errorf("crashed + resumed granted %v\nuninterrupted %v", joined, want)
	}
	nothing, code, _ := g.run("-player", "2002", "-resume")
	if code != exitNothing || !strings.Contains(nothing, "nothing to resume") {
		t.Errorf("a completed pull resumed (exit %d):\n%s", code, nothing)
	}
}

func TestCrashedPullRollsBackRefundingTheDrawsNeverMade(t *testing.T) {
	g := startDaemon(t)
	crashed, _, killed := g.run("-player", "3001", "-seed", "7", "-crash-after", "4", "-fail-draw", "2")
	if !killed || len(draws(crashed)) != 4 {
		t.Fatalf("no crash after draw 4:\n%s", crashed)
	}
	out, code, _ := g.run("-player", "3001", "-rollback")
	if code != 0 || !strings.Contains(out, "(cleanup done)") ||
		!strings.Contains(out, "granted before the crash: 3 of 10 draws") {
		t.Fatalf("rollback (exit %d):\n%s", code, out)
	}
	// Waits for the daemon's outcome-stream contract: final tells this caller to refund.
	if !strings.Contains(out, "refunded: 7 of 10 draws = 1120 of 1600 gems") {
		t.Errorf("the refund is not this caller's:\n%s", out)
	}
	again, code, _ := g.run("-player", "3001", "-rollback")
	if code != exitNothing || !strings.Contains(again, "nothing to roll back") {
		t.Errorf("a second rollback found something (exit %d):\n%s", code, again)
	}
}

func TestAPullWhoseSaveCannotBeConfirmedIsInDoubtAndGrantsNothing(t *testing.T) {
	g, d := startOwnDaemon(t)
	d.StopRedis() // every save now ends in redis_unavailable, which may still have been written
	out, code, _ := g.run("-player", "5001", "-timeout", "300ms", "-resend-deadline", "1s")
	if code != exitError || !strings.Contains(out, "player 5001: a save is in doubt (outcome_unknown); nothing granted for it: run -resume") ||
		len(draws(out)) != 0 {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestARollbackThatIsNotFinalLeavesTheRefundPendingToTheStream(t *testing.T) {
	// A scripted daemon: a deferred rollback needs Redis to fail between the claim and the rollback.
	socket := filepath.Join(t.TempDir(), "d.sock")
	serveScripted(t, socket, func(req map[string]any) map[string]any {
		switch req["op"] {
		case "load":
			now := time.Now().Unix()
			return map[string]any{"state": map[string]any{"lock_key": "player:6001", "operation_id": "op_6001",
				"total_count": 10, "completed_count": 4, "prize_results": []any{banner[0], banner[1], banner[2], banner[2]},
				"start_time": now, "last_update_time": now, "version": 5,
				"metadata": map[string]any{"user_id": "6001", "price_paid": "1600"}}}
		case "save":
			return map[string]any{"version": 6, "ttl_s": 3600}
		case "rollback":
			return map[string]any{"state": req["state"], "cleanup": "deferred", "final": false, "existed": false}
		}
		return map[string]any{}
	})
	out, code, _ := gacha{t: t, socket: socket}.run("-player", "6001", "-rollback")
	if code != exitOK || !strings.Contains(out, "(cleanup deferred)") ||
		!strings.Contains(out, "refund pending: the outcome stream carries it (about 960 of 1600 gems)") ||
		strings.Contains(out, "refunded:") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// serveScripted answers each request on socket with ok and answer(request)'s fields.
func serveScripted(t *testing.T, socket string, answer func(map[string]any) map[string]any) {
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Close() })
	go func() {
		for {
			nc, err := listener.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				for {
					header := make([]byte, 4)
					if _, err := io.ReadFull(nc, header); err != nil {
						return
					}
					body := make([]byte, binary.BigEndian.Uint32(header))
					if _, err := io.ReadFull(nc, body); err != nil {
						return
					}
					var req map[string]any
					if err := msgpack.Unmarshal(body, &req); err != nil {
						return
					}
					reply := answer(req)
					reply["id"], reply["ok"] = req["id"], true
					out, _ := msgpack.Marshal(reply)
					if _, err := nc.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(out))), out...)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
