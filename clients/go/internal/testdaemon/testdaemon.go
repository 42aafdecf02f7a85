// Package testdaemon runs a real drawstate daemon for the Go client's tests: a
// redis-server on a private unix socket and `python -m drawstated` in front of
// it, both in a temporary directory, both stopped by Stop.
//
// Python is $DRAWSTATE_PYTHON, else python3 or python on PATH; it must import
// drawstated (pip install -e '.[daemon]'). redis-server is $DRAWSTATE_REDIS_SERVER,
// else redis-server on PATH. When either is missing the tests skip, saying why,
// unless DRAWSTATE_GO_REQUIRE_DAEMON=1 (as the Python test runner sets), which
// makes a missing daemon a failure.
package testdaemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// StartTimeout bounds how long redis-server and the daemon may take to come up (a busy 2-core CI machine).
const StartTimeout = 30 * time.Second

// StopTimeout bounds a graceful stop before the process is killed.
const StopTimeout = 20 * time.Second

// pollInterval is how often readiness is probed while waiting.
const pollInterval = 20 * time.Millisecond

// RequireEnv makes a missing daemon fail the tests instead of skipping them.
const RequireEnv = "DRAWSTATE_GO_REQUIRE_DAEMON"

// ErrUnavailable wraps why no daemon can run here (no python, no redis-server).
var ErrUnavailable = errors.New("no drawstate daemon can run here")

// proc is a started process and the channel closed when it exits.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Daemon is a running redis-server and drawstated pair.
type Daemon struct {
	Dir    string // the temporary directory holding sockets, data and logs
	Socket string // the daemon's socket
	Redis  string // redis-server's unix socket
	python string
	args   []string
	redis  *proc
	daemon *proc
}

// Required reports whether a missing daemon must fail the tests.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

func findPython() (string, error) {
	if explicit := os.Getenv("DRAWSTATE_PYTHON"); explicit != "" {
		return explicit, nil
	}
	for _, name := range []string{"python3", "python"} {
		if path, err := exec.LookPath(name); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("%w: no python3 or python on PATH (or set DRAWSTATE_PYTHON)", ErrUnavailable)
}

func findRedis() (string, error) {
	if explicit := os.Getenv("DRAWSTATE_REDIS_SERVER"); explicit != "" {
		return explicit, nil
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("%w: no redis-server on PATH (or set DRAWSTATE_REDIS_SERVER)", ErrUnavailable)
	}
	return path, nil
}

// Start runs redis-server and the daemon in a new temporary directory; extra
// arguments go to the daemon (e.g. "--ttl", "2").
func Start(extra ...string) (*Daemon, error) {
	python, err := findPython()
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command(python, "-c", "import drawstated").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: %s cannot import drawstated (pip install -e '.[daemon]'): %s",
			ErrUnavailable, python, strings.TrimSpace(string(out)))
	}
	redisServer, err := findRedis()
	if err != nil {
		return nil, err
	}
	// Short: unix socket paths must stay under ~100 bytes.
	dir, err := os.MkdirTemp("/tmp", "dsgo-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "d.sock"), Redis: filepath.Join(dir, "r.sock"), python: python}
	d.args = append([]string{"-m", "drawstated", "--socket", d.Socket, "--redis-url", "unix://" + d.Redis,
		"--data-dir", filepath.Join(dir, "data")}, extra...)
	d.redis, err = d.spawn("redis.log", redisServer, "--port", "0", "--unixsocket", d.Redis,
		"--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", dir)
	if err != nil {
		d.Stop()
		return nil, err
	}
	if err := waitFor(d.redis, func() error { return pingRedis(d.Redis) }); err != nil {
		d.Stop()
		return nil, fmt.Errorf("redis-server did not start: %w\n%s", err, d.Log("redis.log"))
	}
	if err := d.StartDaemon(); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// spawn starts a process with its output appended to logName, and watches for its exit.
func (d *Daemon) spawn(logName, name string, args ...string) (*proc, error) {
	log, err := os.OpenFile(filepath.Join(d.Dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// StartDaemon starts drawstated (again, after StopDaemon) on the same socket and Redis.
func (d *Daemon) StartDaemon() error {
	var err error
	d.daemon, err = d.spawn("daemon.log", d.python, d.args...)
	if err != nil {
		return err
	}
	if err := waitFor(d.daemon, func() error { return pingDaemon(d.Socket) }); err != nil {
		return fmt.Errorf("drawstated did not start: %w\n%s", err, d.Log("daemon.log"))
	}
	return nil
}

// StopDaemon stops drawstated (SIGTERM, then SIGKILL past StopTimeout) and leaves Redis running.
func (d *Daemon) StopDaemon() {
	stop(d.daemon)
	d.daemon = nil
}

// StopRedis stops redis-server and leaves the daemon running: Redis is unreachable from then on.
func (d *Daemon) StopRedis() {
	stop(d.redis)
	d.redis = nil
}

// Stop stops both processes and removes the directory.
func (d *Daemon) Stop() {
	stop(d.daemon)
	stop(d.redis)
	_ = os.RemoveAll(d.Dir)
}

// Log returns the tail of a log file in the directory, for a failure message.
func (d *Daemon) Log(name string) string {
	const tail = 4000
	data, _ := os.ReadFile(filepath.Join(d.Dir, name))
	if len(data) > tail {
		data = data[len(data)-tail:]
	}
	return string(data)
}

func stop(p *proc) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls ready until it succeeds, the process exits, or StartTimeout passes.
func waitFor(p *proc, ready func() error) error {
	deadline := time.Now().Add(StartTimeout)
	var err error
	for time.Now().Before(deadline) {
		if err = ready(); err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("process exited: %v", err)
		case <-time.After(pollInterval):
		}
	}
	return fmt.Errorf("not ready after %s: %v", StartTimeout, err)
}

func pingRedis(path string) error {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

// pingDaemon sends one raw ping frame and waits for a reply frame: the helper
// does not depend on the client it helps test.
func pingDaemon(path string) error {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	// {"id": 1, "op": "ping"}: docs/protocol.md §11.1 without deadline_ms.
	body := []byte{0x82, 0xa2, 'i', 'd', 0x01, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g'}
	if _, err := conn.Write(append([]byte{0, 0, 0, byte(len(body))}, body...)); err != nil {
		return err
	}
	_, err = io.ReadFull(conn, make([]byte, 4))
	return err
}
