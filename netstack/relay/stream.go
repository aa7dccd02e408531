package relay

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Buffer sizes of a stream's copy. Each direction reads into a small buffer and moves to a
// large pooled one while reads fill it (a bulk transfer), back to the small one after a short
// read: an idle or interactive flow holds 2 KiB per direction, not 32, which is what lets one
// shadow hold 10,000 flows in tens of MiB.
const (
	SmallBufferSize = 2 << 10
	BufferSize      = 32 << 10
)

var (
	smallBufs  = sync.Pool{New: func() any { b := make([]byte, SmallBufferSize); return &b }}
	streamBufs = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}
)

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
// and WriterTo so that every copy uses the pooled buffers, never a fresh 32 KiB one. It reads
// into the small buffer, takes a large one while reads fill what they are given, and gives it
// back after a read that would have fit the small one.
func copyHalf(dst, src net.Conn) (int64, error) {
	small := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(small)
	var large *[]byte
	defer func() {
		if large != nil {
			streamBufs.Put(large)
		}
	}()
	var n int64
	for {
		buf := *small
		if large != nil {
			buf = *large
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		switch {
		case large == nil && nr == len(buf):
			large = streamBufs.Get().(*[]byte)
		case large != nil && nr <= SmallBufferSize:
			streamBufs.Put(large)
			large = nil
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
