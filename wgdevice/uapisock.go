package wgdevice

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.zx2c4.com/wireguard/device"
)

// UAPISocket serves wireguard-go's UAPI on a unix socket, as wireguard-go's own ipc package
// does at /var/run/wireguard, but in any directory, and with an owner: Close ends every
// connection and waits for its handler.
type UAPISocket struct {
	ln *net.UnixListener

	mu     sync.Mutex // guards the fields below
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup // connection handlers; Add only under mu while !closed
}

// ListenUAPI listens on path with mode 0600, creating its directory 0755. A socket file left
// by a dead process is replaced; one that still answers belongs to a live process and is an
// error.
func ListenUAPI(path string) (*UAPISocket, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create uapi directory: %w", err)
	}
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err != nil {
		if c, derr := net.Dial("unix", path); derr == nil {
			c.Close()
			return nil, fmt.Errorf("listen on uapi socket %s: in use by a live process", path)
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, fmt.Errorf("listen on uapi socket %s: %w", path, err)
		}
		if ln, err = net.ListenUnix("unix", addr); err != nil {
			return nil, fmt.Errorf("listen on uapi socket %s: %w", path, err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod uapi socket: %w", err)
	}
	return &UAPISocket{ln: ln, conns: map[net.Conn]struct{}{}}, nil
}

// Serve hands each connection to dev until Close, then returns nil. Call it once.
func (s *UAPISocket) Serve(dev *device.Device) error {
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("accept uapi connection: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			dev.IpcHandle(c) // closes c
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, removes the socket file (closing a UnixListener unlinks it), ends
// every open connection and waits for their handlers. Serve then returns nil.
func (s *UAPISocket) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
