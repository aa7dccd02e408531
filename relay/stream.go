package relay

import (
	"errors"
	"io"
	"net"
	"sync"
)

// BufferSize is the size of each of a stream's two copy buffers. 16 KiB is a dozen segments at
// the mesh's MTU: enough to keep a WireGuard path busy, small enough for 10,000 flows.
const BufferSize = 16 << 10

var streamBufs = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

// closeWriter is a connection whose write half can be closed alone (*net.TCPConn, gonet's
// TCPConn, *net.UnixConn).
type closeWriter interface{ CloseWrite() error }

// Stream copies a to b and b to a until both directions ended. When one side's reads end
// cleanly (EOF), the other side's write half is closed (a FIN follows the data) and the other
// direction goes on: half-closed streams keep working. A connection without CloseWrite is
// closed whole instead. A read or write error in either direction (a reset) closes both at once.
// Stream closes both connections before it returns the bytes copied each way and the first
// error that was not a clean end.
func Stream(a, b net.Conn) (aToB, bToA int64, err error) {
	var (
		wg   sync.WaitGroup
		once sync.Once
		errA error
	)
	abort := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		aToB, errA = copyHalf(b, a)
		if errA != nil {
			abort()
		}
	}()
	bToA, err = copyHalf(a, b)
	if err != nil {
		abort()
	}
	wg.Wait()
	abort()
	if err == nil {
		err = errA
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil // the other direction's failure closed this one: already reported
	}
	return aToB, bToA, err
}

// copyHalf copies src to dst until src ends, then closes dst's write half. It hides ReaderFrom
// and WriterTo so that every copy uses one pooled buffer, never a fresh 32 KiB one.
func copyHalf(dst, src net.Conn) (int64, error) {
	bp := streamBufs.Get().(*[]byte)
	defer streamBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			if cw, ok := dst.(closeWriter); ok {
				if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
					return n, err
				}
				return n, nil
			}
			return n, dst.Close()
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
