package tunnel

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// upgradeReq describes an upgrade request as a stock wstunnel v10 client
// sends it (hyper writes lower-case header names).
type upgradeReq struct {
	method, path string
	headers      [][2]string
}

func stockUpgrade(host, prefix, token string) upgradeReq {
	var key [16]byte
	rand.Read(key[:])
	return upgradeReq{
		method: "GET",
		path:   "/" + prefix + "/events",
		headers: [][2]string{
			{"host", host},
			{"upgrade", "websocket"},
			{"connection", "upgrade"},
			{"sec-websocket-key", base64.StdEncoding.EncodeToString(key[:])},
			{"sec-websocket-version", "13"},
			{"sec-websocket-protocol", "v1, " + BearerPrefix + token},
		},
	}
}

// stockToken is a token as wstunnel's client builds it for
// "-L udp://127.0.0.1:51821:<dst>?timeout_sec=0".
func stockToken(dst string, port int) string {
	return jwtOf(wstunnelHeader, fmt.Sprintf(`{"id":"%s","p":{"Udp":{"timeout":null}},"r":"%s","rp":%d}`, newUUID(), dst, port))
}

func (u upgradeReq) with(name, value string) upgradeReq {
	out := u
	out.headers = nil
	found := false
	for _, h := range u.headers {
		if h[0] == name {
			found = true
			if value == "" {
				continue
			}
			h[1] = value
		}
		out.headers = append(out.headers, h)
	}
	if !found && value != "" {
		out.headers = append(out.headers, [2]string{name, value})
	}
	return out
}

func (u upgradeReq) header(name string) string {
	for _, h := range u.headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

func (u upgradeReq) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", u.method, u.path)
	for _, h := range u.headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	return b.String()
}

// rawConn is a hand-driven client connection.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

// sendUpgrade writes req on a new connection and reads the response head.
func sendUpgrade(t testing.TB, addr string, req upgradeReq) (*http.Response, *rawConn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	rc := &rawConn{Conn: c, br: bufio.NewReader(c)}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	c.SetDeadline(time.Time{})
	return resp, rc
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// openBind opens b and closes it when the test ends.
func openBind(t testing.TB, b conn.Bind) conn.ReceiveFunc {
	t.Helper()
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return fns[0]
}

// recvDatagrams calls fn until it has n datagrams, within d.
func recvDatagrams(t testing.TB, fn conn.ReceiveFunc, n int, d time.Duration) ([]string, []conn.Endpoint) {
	t.Helper()
	type batch struct {
		got []string
		eps []conn.Endpoint
		err error
	}
	ch := make(chan batch, 1)
	go func() {
		var out batch
		bufs := make([][]byte, conn.IdealBatchSize)
		for i := range bufs {
			bufs[i] = make([]byte, 1<<16)
		}
		sizes := make([]int, len(bufs))
		eps := make([]conn.Endpoint, len(bufs))
		for len(out.got) < n {
			k, err := fn(bufs, sizes, eps)
			if err != nil {
				out.err = err
				break
			}
			for i := range k {
				out.got = append(out.got, string(bufs[i][:sizes[i]]))
				out.eps = append(out.eps, eps[i])
			}
		}
		ch <- out
	}()
	select {
	case b := <-ch:
		if b.err != nil {
			t.Fatalf("receive: %v", b.err)
		}
		return b.got, b.eps
	case <-time.After(d):
		t.Fatalf("timed out waiting for %d datagrams", n)
		return nil, nil
	}
}

func TestServerRefusesUpgrades(t *testing.T) {
	srv, addr := newTestServer(t, ServerConfig{UpgradeRate: -1})
	startServer(t, srv)
	base := stockUpgrade(addr, testPrefix, stockToken("127.0.0.1", 51820))

	for _, tc := range []struct {
		name string
		req  upgradeReq
	}{
		{"wrong prefix", stockUpgrade(addr, "guess", stockToken("127.0.0.1", 51820))},
		{"prefix with a different length", stockUpgrade(addr, testPrefix+"x", stockToken("127.0.0.1", 51820))},
		{"wrong path after the prefix", func() upgradeReq { r := base; r.path = "/" + testPrefix + "/other"; return r }()},
		{"no prefix", func() upgradeReq { r := base; r.path = "/events"; return r }()},
		{"root", func() upgradeReq { r := base; r.path = "/"; return r }()},
		{"another destination host", base.with("sec-websocket-protocol", "v1, "+BearerPrefix+stockToken("10.0.0.1", 51820))},
		{"another destination port", base.with("sec-websocket-protocol", "v1, "+BearerPrefix+stockToken("127.0.0.1", 22))},
		{"hostname destination", base.with("sec-websocket-protocol", "v1, "+BearerPrefix+stockToken("localhost", 51820))},
		{"tcp tunnel", base.with("sec-websocket-protocol", "v1, "+BearerPrefix+jwtOf(wstunnelHeader, `{"id":"x","p":{"Tcp":{"proxy_protocol":false}},"r":"127.0.0.1","rp":51820}`))},
		{"reverse udp tunnel", base.with("sec-websocket-protocol", "v1, "+BearerPrefix+jwtOf(wstunnelHeader, `{"id":"x","p":{"ReverseUdp":{"timeout":null}},"r":"127.0.0.1","rp":51820}`))},
		{"missing subprotocol header", base.with("sec-websocket-protocol", "")},
		{"subprotocol without token", base.with("sec-websocket-protocol", "v1")},
		{"malformed token", base.with("sec-websocket-protocol", "v1, "+BearerPrefix+"not-a-jwt")},
		{"POST", func() upgradeReq { r := base; r.method = "POST"; return r }()},
		{"no upgrade header", base.with("upgrade", "")},
		{"no connection upgrade", base.with("connection", "keep-alive")},
		{"websocket version 8", base.with("sec-websocket-version", "8")},
		{"bad key", base.with("sec-websocket-key", "short")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Stats().Refused
			resp, _ := sendUpgrade(t, addr, tc.req)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || string(body) != "Invalid request" {
				t.Errorf("got %d %q, want 400 %q", resp.StatusCode, body, "Invalid request")
			}
			if got := srv.Stats().Refused; got != before+1 {
				t.Errorf("refused counter %d -> %d, want +1", before, got)
			}
		})
	}
	if st := srv.Stats(); st.Sessions != 0 || st.Active != 0 {
		t.Errorf("refused upgrades created sessions: %+v", st)
	}

	// The same server accepts the stock request itself.
	resp, _ := sendUpgrade(t, addr, base)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("stock upgrade: status %d", resp.StatusCode)
	}
	polltest.True(t, "session", 2*time.Second, func() bool { return srv.Stats().Active == 1 })
}

func TestServerRefusesWhenNotRunning(t *testing.T) {
	srv, err := NewServer(ServerConfig{PathPrefix: testPrefix})
	if err != nil {
		t.Fatal(err)
	}
	w := &recorder{header: http.Header{}}
	r, _ := http.ReadRequest(bufio.NewReader(strings.NewReader(stockUpgrade("h", testPrefix, stockToken("127.0.0.1", 51820)).String())))
	r.RemoteAddr = "192.0.2.1:1234"
	srv.ServeHTTP(w, r)
	if w.code != http.StatusBadRequest || w.body.String() != "Invalid request" {
		t.Errorf("got %d %q, want 400 Invalid request", w.code, w.body.String())
	}
}

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }

func TestServerRateLimitsUpgrades(t *testing.T) {
	srv, addr := newTestServer(t, ServerConfig{UpgradeRate: 0.001, UpgradeBurst: 2})
	startServer(t, srv)
	good := stockUpgrade(addr, testPrefix, stockToken("127.0.0.1", 51820))
	// Two guesses use the burst; then even the right request is refused.
	for _, req := range []upgradeReq{stockUpgrade(addr, "guess1", stockToken("127.0.0.1", 51820)), stockUpgrade(addr, "guess2", stockToken("127.0.0.1", 51820)), good} {
		resp, _ := sendUpgrade(t, addr, req)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	}
	if st := srv.Stats(); st.Sessions != 0 || st.Refused != 3 {
		t.Errorf("stats %+v, want 3 refused and no session", st)
	}
}

func TestServerReplacesOlderSession(t *testing.T) {
	srv, addr := newTestServer(t, ServerConfig{})
	startServer(t, srv)
	recv := openBind(t, NewServerBind(srv))

	_, old := sendUpgrade(t, addr, stockUpgrade(addr, testPrefix, stockToken("127.0.0.1", 51820)))
	old.Write(binFrame(testKey, []byte("from old")))
	_, eps := recvDatagrams(t, recv, 1, 5*time.Second)
	oldEP := eps[0]

	_, cur := sendUpgrade(t, addr, stockUpgrade(addr, testPrefix, stockToken("127.0.0.1", 51820)))
	// The old session is told to go away (1001) and closed.
	f, err := readDataFrame(old, old.br, 5*time.Second)
	if err != nil || f.Op != opClose || string(f.Payload) != "\x03\xe9" {
		t.Fatalf("old session got %v %v, want close 1001", f, err)
	}
	if st := srv.Stats(); st.Sessions != 2 || st.Active != 1 {
		t.Errorf("stats %+v, want 2 sessions, 1 active", st)
	}
	// A send to the old endpoint reaches the new session.
	if err := NewServerBind(srv).Send([][]byte{[]byte("to whoever is live")}, oldEP); err != nil {
		t.Fatal(err)
	}
	f, err = readDataFrame(cur, cur.br, 5*time.Second)
	if err != nil || string(f.Payload) != "to whoever is live" {
		t.Fatalf("new session got %v %v", f, err)
	}
	cur.Write(binFrame(testKey, []byte("from new")))
	_, eps = recvDatagrams(t, recv, 1, 5*time.Second)
	if eps[0] == oldEP {
		t.Error("new session reuses the old endpoint; wireguard-go would not see the roam")
	}
}

func TestServerPingsAndGivesUp(t *testing.T) {
	srv, addr := newTestServer(t, ServerConfig{PingInterval: 20 * time.Millisecond, PingMisses: 3})
	startServer(t, srv)
	_, c := sendUpgrade(t, addr, stockUpgrade(addr, testPrefix, stockToken("127.0.0.1", 51820)))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ops []byte
	for {
		f, err := readRawFrame(c.br)
		if err != nil {
			break // the server hung up
		}
		ops = append(ops, f.Op)
	}
	want := string([]byte{opPing, opPing, opPing, opClose})
	if string(ops) != want {
		t.Errorf("frames from a server whose pings go unanswered: %v, want %v", ops, []byte(want))
	}
	polltest.True(t, "session end", 2*time.Second, func() bool { return srv.Stats().Active == 0 })
}

func TestServerClosesOnOversizeMessage(t *testing.T) {
	srv, addr := newTestServer(t, ServerConfig{MaxMessageSize: 100})
	startServer(t, srv)
	recv := openBind(t, NewServerBind(srv))
	_, c := sendUpgrade(t, addr, stockUpgrade(addr, testPrefix, stockToken("127.0.0.1", 51820)))
	c.Write(binFrame(testKey, make([]byte, 100)))
	recvDatagrams(t, recv, 1, 5*time.Second)
	c.Write(binFrame(testKey, make([]byte, 101)))
	f, err := readDataFrame(c, c.br, 5*time.Second)
	if err != nil || f.Op != opClose || string(f.Payload[:2]) != "\x03\xf1" {
		t.Fatalf("got %v %v, want close 1009", f, err)
	}
	polltest.True(t, "session end", 2*time.Second, func() bool { return srv.Stats().Active == 0 })
}

// wgMessage returns a WireGuard-shaped datagram of the given type and size.
func wgMessage(typ uint32, size int) []byte {
	p := make([]byte, size)
	binary.LittleEndian.PutUint32(p, typ)
	_, _ = rand.Read(p[4:])
	return p
}

func TestIsInitiation(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"initiation", wgMessage(1, 148), true},
		{"response", wgMessage(2, 92), false},
		{"cookie", wgMessage(3, 64), false},
		{"data of the initiation's size", wgMessage(4, 148), false},
		{"type 1, wrong size", wgMessage(1, 149), false},
		{"empty", nil, false},
	} {
		if got := isInitiation(tc.p); got != tc.want {
			t.Errorf("%s: isInitiation = %v", tc.name, got)
		}
	}
}

// TestServerBacklogSkipsInitiations: while no session is up, the server's backlog drops
// handshake initiations and keeps data packets for the next session, without touching the
// caller's batch; once a session is up, initiations pass.
func TestServerBacklogSkipsInitiations(t *testing.T) {
	srv, addr := newTestServer(t, ServerConfig{})
	startServer(t, srv)
	b := NewServerBind(srv)
	ep, err := b.ParseEndpoint("127.0.0.1:51820")
	if err != nil {
		t.Fatal(err)
	}
	init1, data := wgMessage(1, 148), wgMessage(4, 96)
	bufs := [][]byte{init1, data}
	if err := b.Send(bufs, ep); err != nil {
		t.Fatal(err)
	}
	if len(bufs) != 2 || !bytes.Equal(bufs[0], init1) || !bytes.Equal(bufs[1], data) {
		t.Error("Send modified the caller's batch")
	}
	if err := b.Send([][]byte{wgMessage(1, 148)}, ep); err != nil { // only initiations: nothing held
		t.Fatal(err)
	}

	_, c := sendUpgrade(t, addr, stockUpgrade(addr, testPrefix, stockToken("127.0.0.1", 51820)))
	f, err := readDataFrame(c, c.br, 5*time.Second)
	if err != nil || !bytes.Equal(f.Payload, data) {
		t.Fatalf("first datagram of the session: %v %v, want the held data packet", f, err)
	}
	init2 := wgMessage(1, 148)
	if err := b.Send([][]byte{init2}, ep); err != nil {
		t.Fatal(err)
	}
	if f, err := readDataFrame(c, c.br, 5*time.Second); err != nil || !bytes.Equal(f.Payload, init2) {
		t.Fatalf("with a session up: %v %v, want the initiation", f, err)
	}
}
