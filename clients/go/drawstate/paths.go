package drawstate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SocketEnv names the environment variable that sets the daemon's socket path.
const SocketEnv = "DRAWSTATE_SOCKET"

// SocketName is the socket's file name in the default directories.
const SocketName = "drawstate.sock"

// unsafeDirBits are the mode bits that must be clear on the default socket
// directory: nobody but its owner may add, remove or swap a socket in it.
const unsafeDirBits = 0o022

// DefaultSocketPath resolves the daemon's socket the way the daemon does
// (docs/protocol.md §1): $DRAWSTATE_SOCKET if set and non-empty, else
// $XDG_RUNTIME_DIR/drawstate.sock if XDG_RUNTIME_DIR is set and non-empty,
// else /tmp/drawstate-<uid>/drawstate.sock with the numeric user id.
func DefaultSocketPath() string {
	if explicit := os.Getenv(SocketEnv); explicit != "" {
		return explicit
	}
	return implicitSocketPath()
}

// implicitSocketPath is the path nobody chose: $XDG_RUNTIME_DIR/drawstate.sock,
// else /tmp/drawstate-<uid>/drawstate.sock.
func implicitSocketPath() string {
	if runtime := os.Getenv("XDG_RUNTIME_DIR"); runtime != "" {
		return filepath.Join(runtime, SocketName)
	}
	return filepath.Join(fmt.Sprintf("/tmp/drawstate-%d", os.Getuid()), SocketName)
}

// UnsafeSocketDir says why dir must not hold a default socket, or "" when only
// this user can change it. The Client checks the default socket's directory
// before each connect, the way tmux and ssh-agent check theirs: another local
// user who made /tmp/drawstate-<uid> first, or who can write to it, could put
// their own socket there and receive the game's saves. A path chosen explicitly
// (Options.SocketPath or $DRAWSTATE_SOCKET) is the operator's and is not checked.
//
// A missing directory is not unsafe: the daemon creates it 0700, and a connect
// simply fails. The directory is read with lstat, never stat, so a symlink to
// a directory someone else controls does not pass as this user's.
func UnsafeSocketDir(dir string) string {
	info, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return fmt.Sprintf("socket directory %s cannot be checked: %v", dir, err)
	}
	if !info.IsDir() {
		return fmt.Sprintf("socket directory %s is not a directory (a symlink or a file)", dir)
	}
	if uid, ok := fileOwner(info); ok && uid != os.Getuid() {
		return fmt.Sprintf("socket directory %s is owned by uid %d, not by this user (%d)", dir, uid, os.Getuid())
	}
	if mode := info.Mode().Perm(); mode&unsafeDirBits != 0 {
		return fmt.Sprintf("socket directory %s can be written by group or others (mode %04o); chmod 0700 it", dir, mode)
	}
	return ""
}
