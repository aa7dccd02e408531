package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testKey = []byte{0x12, 0x34, 0x56, 0x78}

// readCase is one stream a peer may send and what readDatagram makes of it.
type readCase struct {
	name    string
	in      []byte
	want    [][]byte // datagrams delivered
	wantErr error    // why the stream ended (io.EOF: input exhausted)
	wantOut []byte   // opcodes of the frames written back
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func closeBody(code uint16) []byte { return binary.BigEndian.AppendUint16(nil, code) }

func readCases() []readCase {
	big := bytes.Repeat([]byte{0xab}, 200)
	max := bytes.Repeat([]byte{0xcd}, 300)
	return []readCase{
		{name: "unmasked binary (stock wstunnel default)", in: binFrame(nil, []byte("hello")), want: [][]byte{[]byte("hello")}, wantErr: io.EOF},
		{name: "masked binary (RFC client, --websocket-mask-frame)", in: binFrame(testKey, []byte("hello")), want: [][]byte{[]byte("hello")}, wantErr: io.EOF},
		{name: "text frame is a datagram too", in: encodeFrame(true, 0, opText, nil, []byte("t")), want: [][]byte{[]byte("t")}, wantErr: io.EOF},
		{name: "empty datagram", in: binFrame(testKey, nil), want: [][]byte{{}}, wantErr: io.EOF},
		{name: "16-bit length, masked", in: binFrame(testKey, big), want: [][]byte{big}, wantErr: io.EOF},
		{name: "exactly the limit", in: binFrame(nil, max), want: [][]byte{max}, wantErr: io.EOF},
		{name: "batch of three", in: concat(binFrame(nil, []byte{1}), binFrame(testKey, []byte{2, 2}), binFrame(nil, []byte{3, 3, 3})),
			want: [][]byte{{1}, {2, 2}, {3, 3, 3}}, wantErr: io.EOF},
		{name: "ping is answered with a pong", in: concat(encodeFrame(true, 0, opPing, testKey, []byte("p")), binFrame(nil, []byte{9})),
			want: [][]byte{{9}}, wantErr: io.EOF, wantOut: []byte{opPong}},
		{name: "pong is swallowed, never answered", in: concat(encodeFrame(true, 0, opPong, nil, nil), binFrame(nil, []byte{9})),
			want: [][]byte{{9}}, wantErr: io.EOF},
		{name: "close is echoed and ends the stream", in: concat(binFrame(nil, []byte{1}), encodeFrame(true, 0, opClose, testKey, closeBody(1000)), binFrame(nil, []byte{2})),
			want: [][]byte{{1}}, wantErr: ErrPeerClosed, wantOut: []byte{opClose}},
		{name: "over the limit", in: binFrame(nil, append(max, 0)), wantErr: ErrMessageTooBig, wantOut: []byte{opClose}},
		{name: "fragmented message", in: concat(encodeFrame(false, 0, opBinary, nil, []byte{1}), encodeFrame(true, 0, opCont, nil, []byte{2})),
			wantErr: ErrProtocol, wantOut: []byte{opClose}},
		{name: "stray continuation", in: encodeFrame(true, 0, opCont, nil, []byte{2}), wantErr: ErrProtocol, wantOut: []byte{opClose}},
		{name: "reserved bits (compression was never negotiated)", in: encodeFrame(true, 4, opBinary, nil, []byte{1}), wantErr: ErrProtocol, wantOut: []byte{opClose}},
		{name: "reserved data opcode", in: encodeFrame(true, 0, 0x3, nil, []byte{1}), wantErr: ErrProtocol, wantOut: []byte{opClose}},
		{name: "reserved control opcode", in: encodeFrame(true, 0, 0xB, nil, nil), wantErr: ErrProtocol, wantOut: []byte{opClose}},
		{name: "fragmented ping", in: encodeFrame(false, 0, opPing, nil, nil), wantErr: ErrProtocol, wantOut: []byte{opClose}},
		{name: "truncated payload", in: binFrame(nil, []byte("hello"))[:4], wantErr: io.ErrUnexpectedEOF},
		{name: "truncated header", in: []byte{0x82}, wantErr: io.ErrUnexpectedEOF},
	}
}

// runRead feeds in to a server-side wsConn with a 300-byte limit.
func runRead(in []byte) (got [][]byte, out []byte, err error) {
	mc := newMemConn(in)
	c := newWSConn(mc, nil, false, 300, time.Second)
	for {
		p, e := c.readDatagram()
		if e != nil {
			return got, mc.out.Bytes(), e
		}
		got = append(got, bytes.Clone(p))
	}
}

func TestReadDatagram(t *testing.T) {
	for _, tc := range readCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, out, err := runRead(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("datagrams (-want +got):\n%s", diff)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			frames, ferr := readAllFrames(out)
			if ferr != nil {
				t.Fatalf("decode written frames: %v", ferr)
			}
			var ops []byte
			for _, f := range frames {
				ops = append(ops, f.Op)
				if f.Masked {
					t.Errorf("server wrote a masked frame %v", f)
				}
			}
			if diff := cmp.Diff(tc.wantOut, ops); diff != "" {
				t.Errorf("frames written back (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteBatch(t *testing.T) {
	large := bytes.Repeat([]byte("0123456789"), 13000) // spans several buffer flushes
	for _, tc := range []struct {
		name string
		mask bool
		bufs [][]byte
	}{
		{"server, unmasked", false, [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{7}, 1420)}},
		{"client, masked", true, [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{7}, 1420)}},
		{"client, masked, larger than the write buffer", true, [][]byte{large}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := make([][]byte, len(tc.bufs))
			for i, b := range tc.bufs {
				orig[i] = bytes.Clone(b)
			}
			mc := newMemConn(nil)
			c := newWSConn(mc, nil, tc.mask, DefaultMaxMessageSize*2, time.Second)
			if err := c.writeBatch(tc.bufs); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(orig, tc.bufs); diff != "" {
				t.Errorf("writeBatch modified the caller's buffers (-want +got):\n%s", diff)
			}
			frames, err := readAllFrames(mc.out.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			var got [][]byte
			for _, f := range frames {
				if !f.Fin || f.Op != opBinary || f.Masked != tc.mask || f.Rsv != 0 {
					t.Errorf("frame %v: want final binary, masked=%v", f, tc.mask)
				}
				got = append(got, f.Payload)
			}
			if diff := cmp.Diff(orig, got); diff != "" {
				t.Errorf("payloads (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzReadDatagram feeds arbitrary bytes to the frame reader: it must not
// panic, must stop within the input, and never deliver over the limit.
func FuzzReadDatagram(f *testing.F) {
	for _, tc := range readCases() {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, _, err := runRead(in)
		if err == nil {
			t.Fatal("reader ended without an error")
		}
		for _, p := range got {
			if len(p) > 300 {
				t.Fatalf("delivered %d bytes over a 300-byte limit", len(p))
			}
		}
	})
}

// FuzzFrameRoundTrip writes datagrams with writeBatch and reads them back.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), []byte{}, true)
	f.Add(bytes.Repeat([]byte{1}, 300), []byte{2}, false)
	f.Fuzz(func(t *testing.T, a, b []byte, mask bool) {
		mc := newMemConn(nil)
		w := newWSConn(mc, nil, mask, 1<<20, time.Second)
		if err := w.writeBatch([][]byte{a, b}); err != nil {
			t.Fatal(err)
		}
		r := newWSConn(newMemConn(mc.out.Bytes()), nil, false, 1<<20, time.Second)
		for i, want := range [][]byte{a, b} {
			got, err := r.readDatagram()
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("datagram %d differs", i)
			}
		}
	})
}
