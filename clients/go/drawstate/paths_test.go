package drawstate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSocketPathFollowsProtocolSectionOne(t *testing.T) {
	uidDefault := fmt.Sprintf("/tmp/drawstate-%d/drawstate.sock", os.Getuid())
	for _, tc := range []struct {
		name, socket, runtime, want string
	}{
		{"explicit socket wins", "/run/x/d.sock", "/run/user/1000", "/run/x/d.sock"},
		{"runtime dir next", "", "/run/user/1000", "/run/user/1000/drawstate.sock"},
		{"empty values count as unset", "", "", uidDefault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(SocketEnv, tc.socket)
			t.Setenv("XDG_RUNTIME_DIR", tc.runtime)
			if got := DefaultSocketPath(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestUnsetVariablesFallBackToTheUidDirectory(t *testing.T) {
	for _, name := range []string{SocketEnv, "XDG_RUNTIME_DIR"} {
		if value, ok := os.LookupEnv(name); ok {
			t.Cleanup(func() { os.Setenv(name, value) })
		}
		os.Unsetenv(name)
	}
	want := fmt.Sprintf("/tmp/drawstate-%d/drawstate.sock", os.Getuid())
	if got := DefaultSocketPath(); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got := NewClient(Options{}).SocketPath(); got != want {
		t.Errorf("client resolves %s", got)
	}
}

// defaultSocketIn makes XDG_RUNTIME_DIR point at dir, so the default socket is dir/drawstate.sock.
func defaultSocketIn(t *testing.T, dir string) {
	t.Setenv(SocketEnv, "")
	t.Setenv("XDG_RUNTIME_DIR", dir)
}

// privateDir is a new 0700 directory of this user, short enough for a socket path.
func privateDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/tmp", "dsgo-dir-")
	must(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func TestTheDefaultSocketDirectoryIsRefusedWhenAnotherUserCouldSwapTheSocket(t *testing.T) {
	for _, tc := range []struct {
		name, why string
		make      func(t *testing.T, dir string) string // returns the directory the client is given
	}{
		{"a symlink to a directory", "is not a directory (a symlink or a file)", func(t *testing.T, dir string) string {
			link := dir + ".link"
			must(t, os.Symlink(dir, link))
			t.Cleanup(func() { _ = os.Remove(link) })
			return link
		}},
		{"owned by another uid", "is owned by uid 65534, not by this user", func(t *testing.T, dir string) string {
			if os.Geteuid() != 0 {
				t.Skip("only root can give a directory away")
			}
			must(t, os.Chown(dir, 65534, 65534))
			return dir
		}},
		{"writable by others", "can be written by group or others (mode 0777)", func(t *testing.T, dir string) string {
			must(t, os.Chmod(dir, 0o777))
			return dir
		}},
		{"writable by the group", "can be written by group or others (mode 0770)", func(t *testing.T, dir string) string {
			must(t, os.Chmod(dir, 0o770))
			return dir
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			// A live socket waits there: the client must refuse it, not merely fail to connect.
			f := startFakeAt(t, filepath.Join(dir, SocketName), func(_ int, req map[string]any) map[string]any {
				return ok(req, map[string]any{"redis": "up"})
			})
			given := tc.make(t, dir)
			defaultSocketIn(t, given)
			c := NewClient(Options{})
			defer c.Close()
			_, err := c.Ping(ctxFor(t))
			if !errors.Is(err, ErrSidecarUnavailable) || errors.Is(err, ErrSidecarTimeout) ||
				!strings.Contains(err.Error(), "refusing to connect to "+filepath.Join(given, SocketName)) ||
				!strings.Contains(err.Error(), tc.why) {
				t.Fatalf("got %v", err)
			}
			if n := len(f.seen()); n != 0 {
				t.Fatalf("%d requests reached the socket", n)
			}

			// A path someone chose is theirs: neither Options.SocketPath nor $DRAWSTATE_SOCKET is checked.
			explicit := NewClient(Options{SocketPath: filepath.Join(given, SocketName)})
			defer explicit.Close()
			_, err = explicit.Ping(ctxFor(t))
			must(t, err)
			t.Setenv(SocketEnv, filepath.Join(given, SocketName))
			fromEnv := NewClient(Options{})
			defer fromEnv.Close()
			_, err = fromEnv.Ping(ctxFor(t))
			must(t, err)
		})
	}
}

func TestAPrivateDefaultSocketDirectoryIsUsed(t *testing.T) {
	dir := privateDir(t)
	startFakeAt(t, filepath.Join(dir, SocketName), func(_ int, req map[string]any) map[string]any {
		return ok(req, map[string]any{"redis": "up"})
	})
	defaultSocketIn(t, dir)
	c := NewClient(Options{})
	defer c.Close()
	result, err := c.Ping(ctxFor(t))
	if err != nil || result.Redis != "up" || UnsafeSocketDir(dir) != "" {
		t.Errorf("ping through %s: %+v, %v (%s)", c.SocketPath(), result, err, UnsafeSocketDir(dir))
	}
}

func TestAMissingDefaultSocketDirectoryIsUnreachableNotRefused(t *testing.T) {
	defaultSocketIn(t, filepath.Join(privateDir(t), "missing"))
	c := NewClient(Options{})
	defer c.Close()
	_, err := c.Ping(ctxFor(t))
	if !errors.Is(err, ErrSidecarUnavailable) || strings.Contains(err.Error(), "refusing") {
		t.Errorf("got %v", err)
	}
}
