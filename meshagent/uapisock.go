package meshagent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.zx2c4.com/wireguard/device"
)

// uapiServer serves wireguard-go's UAPI on a unix socket, as wireguard-go's own ipc package does
// at /var/run/wireguard, but in any directory and with an owner that closes every connection and
// waits for its handlers.
type uapiServer struct {
	ln *net.UnixListener

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// listenUAPI listens on path (mode 0600, its directory created 0755). A stale socket left by a
// dead process is replaced; one that still answers is an error.
func listenUAPI(path string) (*uapiServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create uapi directory: %w", err)
	}
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err != nil {
		if c, derr := net.Dial("unix", path); derr == nil {
			c.Close()
			return nil, fmt.Errorf("listen on uapi socket %s: in use by another process", path)
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, fmt.Errorf("listen on uapi socket: %w", err)
		}
		if ln, err = net.ListenUnix("unix", addr); err != nil {
			return nil, fmt.Errorf("listen on uapi socket: %w", err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod uapi socket: %w", err)
	}
	return &uapiServer{ln: ln, conns: map[net.Conn]struct{}{}}, nil
}

// serve hands each connection to the device until close.
func (s *uapiServer) serve(dev *device.Device) error {
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

// close stops accepting, removes the socket file, ends every connection and waits for their
// handlers.
func (s *uapiServer) close() {
	s.ln.Close() // unlinks the socket file
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
