package drawstate

import (
	"fmt"
	"os"
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
