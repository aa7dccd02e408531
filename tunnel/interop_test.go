package tunnel

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// TestInteropStockClient plays a wstunnel v10 client, byte for byte, against
// our Server: with --websocket-mask-frame (RFC masking) and with default
// flags (unmasked client frames).
func TestInteropStockClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		mask []byte
	}{
		{"--websocket-mask-frame", testKey},
		{"default flags, unmasked", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := newTestServer(t, ServerConfig{})
			startServer(t, srv)
			bind := NewServerBind(srv)
			recv := openBind(t, bind)

			req := stockUpgrade(addr, testPrefix, stockToken("127.0.0.1", 51820))
			resp, c := sendUpgrade(t, addr, req)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			for h, want := range map[string]string{
				"Upgrade":                "websocket",
				"Connection":             "Upgrade",
				"Sec-Websocket-Protocol": Subprotocol,
				"Sec-Websocket-Accept":   acceptKey(req.header("sec-websocket-key")),
			} {
				if got := resp.Header.Get(h); !strings.EqualFold(got, want) {
					t.Errorf("response %s = %q, want %q", h, got, want)
				}
			}

			// Datagrams in, one per frame, as wstunnel writes them.
			c.Write(binFrame(tc.mask, []byte("datagram one")))
			c.Write(append(binFrame(tc.mask, []byte("two")), binFrame(tc.mask, make([]byte, 1420))...))
			got, eps := recvDatagrams(t, recv, 3, 5*time.Second)
			if diff := cmp.Diff([]string{"datagram one", "two", string(make([]byte, 1420))}, got); diff != "" {
				t.Errorf("datagrams (-want +got):\n%s", diff)
			}
			if want := c.LocalAddr().String(); eps[0].DstToString() != want {
				t.Errorf("endpoint %s, want the client's address %s", eps[0].DstToString(), want)
			}

			// Datagrams out: unmasked, final, binary.
			if err := bind.Send([][]byte{[]byte("reply"), []byte("reply 2")}, eps[0]); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"reply", "reply 2"} {
				f, err := readDataFrame(c, c.br, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !f.Fin || f.Op != opBinary || f.Masked || string(f.Payload) != want {
					t.Errorf("got %v %q, want an unmasked final binary %q", f, f.Payload, want)
				}
			}

			// wstunnel pings with an empty payload; the pong echoes it.
			c.Write(encodeFrame(true, 0, opPing, tc.mask, []byte("hb")))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			f, err := readRawFrame(c.br)
			if err != nil || f.Op != opPong || string(f.Payload) != "hb" {
				t.Fatalf("got %v %v, want pong \"hb\"", f, err)
			}

			// A close frame is echoed and ends the session.
			c.Write(encodeFrame(true, 0, opClose, tc.mask, closeBody(1000)))
			f, err = readRawFrame(c.br)
			if err != nil || f.Op != opClose || string(f.Payload) != string(closeBody(1000)) {
				t.Fatalf("got %v %v, want close 1000 echoed", f, err)
			}
			if _, err := readRawFrame(c.br); err != io.EOF {
				t.Errorf("after close: %v, want EOF", err)
			}
			polltest.True(t, "session end", 2*time.Second, func() bool { return srv.Stats().Active == 0 })
		})
	}
}

// stockServer plays a wstunnel v10 server on a loopback listener: it
// records each upgrade request and answers like hyper + fastwebsockets.
type stockServer struct {
	ln     net.Listener
	refuse int // answer the first refuse upgrades with 400
	reqs   chan *http.Request
	conns  chan *rawConn
	wg     sync.WaitGroup
}

func newStockServer(t testing.TB, refuse int) *stockServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stockServer{ln: ln, refuse: refuse, reqs: make(chan *http.Request, 16), conns: make(chan *rawConn, 16)}
	var (
		mu  sync.Mutex
		all []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range all {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Go(func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			all = append(all, c)
			mu.Unlock()
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				c.Close()
				continue
			}
			s.reqs <- req
			if n < s.refuse {
				io.WriteString(c, "HTTP/1.1 400 Bad Request\r\ncontent-length: 15\r\n\r\nInvalid request")
				c.Close()
				continue
			}
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n"+
				"sec-websocket-accept: %s\r\nsec-websocket-protocol: v1\r\ndate: %s\r\n\r\n",
				acceptKey(req.Header.Get("Sec-WebSocket-Key")), time.Now().UTC().Format(http.TimeFormat))
			s.conns <- &rawConn{Conn: c, br: br}
		}
	})
	return s
}

func (s *stockServer) url() string { return "ws://" + s.ln.Addr().String() }

// TestInteropStockServer runs our Client against a hand-built wstunnel
// server: masked frames for a --websocket-mask-frame server, unmasked
// frames (Unmasked) for a default-flag server that does not unmask.
func TestInteropStockServer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		unmasked bool
	}{
		{"--websocket-mask-frame server", false},
		{"default-flag server (no unmasking)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := newStockServer(t, 0)
			cli := newTestClient(t, ClientConfig{URL: ss.url(), Unmasked: tc.unmasked})
			start(t, cli.Run)
			bind := NewClientBind(cli)
			recv := openBind(t, bind)

			req := <-ss.reqs
			checkStockRequest(t, req)
			c := <-ss.conns
			polltest.True(t, "client session", 5*time.Second, func() bool { return cli.Stats().Active == 1 })

			// Client to server: one frame per datagram, masked as configured.
			ep, err := bind.ParseEndpoint("127.0.0.1:51821")
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"handshake initiation", strings.Repeat("x", 1420)}
			if err := bind.Send([][]byte{[]byte(want[0]), []byte(want[1])}, ep); err != nil {
				t.Fatal(err)
			}
			for _, w := range want {
				f, err := readDataFrame(c, c.br, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !f.Fin || f.Op != opBinary || f.Rsv != 0 || f.Masked == tc.unmasked {
					t.Errorf("frame %v: want final binary, masked=%v", f, !tc.unmasked)
				}
				// A default-flag server uses the payload as it arrived.
				seen := f.Payload
				if tc.unmasked {
					seen = f.Wire
				}
				if string(seen) != w {
					t.Errorf("server sees %.20q…, want %.20q…", seen, w)
				}
			}

			// Server to client: unmasked frames, a ping in between.
			c.Write(binFrame(nil, []byte("response")))
			c.Write(encodeFrame(true, 0, opPing, nil, nil))
			c.Write(binFrame(nil, []byte("keepalive")))
			got, eps := recvDatagrams(t, recv, 2, 5*time.Second)
			if diff := cmp.Diff([]string{"response", "keepalive"}, got); diff != "" {
				t.Errorf("datagrams (-want +got):\n%s", diff)
			}
			if eps[0].DstToString() != "127.0.0.1:51820" {
				t.Errorf("endpoint %s, want the destination 127.0.0.1:51820", eps[0].DstToString())
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			f, err := readRawFrame(c.br)
			if err != nil || f.Op != opPong || len(f.Payload) != 0 || f.Masked == tc.unmasked {
				t.Errorf("got %v %v, want an empty pong, masked=%v", f, err, !tc.unmasked)
			}
		})
	}
}

// checkStockRequest asserts the upgrade request is what wstunnel sends.
func checkStockRequest(t *testing.T, req *http.Request) {
	t.Helper()
	if req.Method != http.MethodGet || req.URL.Path != "/"+testPrefix+"/events" || req.Proto != "HTTP/1.1" {
		t.Errorf("request line %s %s %s", req.Method, req.URL.Path, req.Proto)
	}
	for h, want := range map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-Websocket-Version": "13"} {
		if got := req.Header.Get(h); !strings.EqualFold(got, want) {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if k, err := base64.StdEncoding.DecodeString(req.Header.Get("Sec-WebSocket-Key")); err != nil || len(k) != 16 {
		t.Errorf("Sec-WebSocket-Key %q is not 16 base64 bytes", req.Header.Get("Sec-WebSocket-Key"))
	}
	protos := req.Header.Values("Sec-WebSocket-Protocol")
	if len(protos) != 1 || !strings.HasPrefix(protos[0], "v1, "+BearerPrefix) {
		t.Fatalf("Sec-WebSocket-Protocol %q, want one line \"v1, authorization.bearer.<jwt>\"", protos)
	}
	parts := strings.Split(strings.TrimPrefix(protos[0], "v1, "+BearerPrefix), ".")
	if len(parts) != 3 {
		t.Fatalf("jwt has %d segments", len(parts))
	}
	hdr, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	claims, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("jwt segments are not base64url: %v %v", err1, err2)
	}
	var h map[string]string
	if err := json.Unmarshal(hdr, &h); err != nil || h["alg"] != "HS256" || h["typ"] != "JWT" {
		t.Errorf("jwt header %s", hdr)
	}
	re := regexp.MustCompile(`^\{"id":"[0-9a-f-]{36}","p":\{"Udp":\{"timeout":null\}\},"r":"127\.0\.0\.1","rp":51820\}$`)
	if !re.Match(claims) {
		t.Errorf("jwt claims %s", claims)
	}
}

// TestClientRedialsAfterRefusal: a server that refuses twice (400), then
// accepts, gets a session without the reader noticing anything.
func TestClientRedialsAfterRefusal(t *testing.T) {
	ss := newStockServer(t, 2)
	cli := newTestClient(t, ClientConfig{URL: ss.url()})
	start(t, cli.Run)
	recv := openBind(t, NewClientBind(cli))
	c := <-ss.conns
	c.Write(binFrame(nil, []byte("finally")))
	got, _ := recvDatagrams(t, recv, 1, 5*time.Second)
	if got[0] != "finally" {
		t.Errorf("got %q", got[0])
	}
	var ids []string
	for range 3 {
		r := <-ss.reqs
		tok, _, _ := ParseProtocols(r.Header.Values("Sec-WebSocket-Protocol"))
		cl, err := ParseToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cl.ID)
	}
	if ids[0] == ids[1] || ids[1] == ids[2] {
		t.Errorf("tunnel ids %v: wstunnel draws a new one per connection", ids)
	}
	if st := cli.Stats(); st.Refused != 2 || st.Sessions != 1 {
		t.Errorf("stats %+v, want 2 refused dials then 1 session", st)
	}
}
