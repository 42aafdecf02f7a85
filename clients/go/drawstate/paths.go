package drawstate

import (
	"fmt"
	"os"
	"path/filepath"
)

// SocketEnv names the environment variable that sets the daemon's socket path.
const SocketEnv = "DRAWSTATE_SOCKET"

// SocketName is the socket's file name in the default directories.
const SocketName = "drawstate.sock"

// DefaultSocketPath resolves the daemon's socket the way the daemon does
// (docs/protocol.md §1): $DRAWSTATE_SOCKET if set and non-empty, else
// $XDG_RUNTIME_DIR/drawstate.sock if XDG_RUNTIME_DIR is set and non-empty,
// else /tmp/drawstate-<uid>/drawstate.sock with the numeric user id.
func DefaultSocketPath() string {
	if explicit := os.Getenv(SocketEnv); explicit != "" {
		return explicit
	}
	if runtime := os.Getenv("XDG_RUNTIME_DIR"); runtime != "" {
		return filepath.Join(runtime, SocketName)
	}
	return filepath.Join(fmt.Sprintf("/tmp/drawstate-%d", os.Getuid()), SocketName)
}
