package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

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
	d, err := testdaemon.Start()
	if err != nil {
		if errors.Is(err, testdaemon.ErrUnavailable) && !testdaemon.Required() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return gacha{t: t, socket: d.Socket}
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
