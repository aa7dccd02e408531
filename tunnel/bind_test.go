package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/echotest"
)

// TestDevicesRebind: wireguard-go closes and re-opens its Bind on every
// rebind and on Down/Up; the WebSocket session must live through it.
func TestDevicesRebind(t *testing.T) {
	p := newWGPair(t, ServerConfig{}, ClientConfig{}, false)
	sln, err := p.snet.ListenTCPAddrPort(netip.AddrPortFrom(shadowIP, 7000))
	if err != nil {
		t.Fatal(err)
	}
	echotest.TCP(t, sln)
	roundTrip := func(step string) {
		t.Helper()
		defer func(t0 time.Time) { t.Logf("%s: %v", step, time.Since(t0)) }(time.Now())
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		c, err := p.cnet.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(shadowIP, 7000))
		if err != nil {
			t.Fatalf("%s: dial: %v", step, err)
		}
		defer c.Close()
		d, _ := ctx.Deadline()
		c.SetDeadline(d)
		msg := bytes.Repeat([]byte(step), 1000)
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("%s: write: %v", step, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: echo: %v", step, err)
		}
	}
	roundTrip("first ")
	for _, d := range []interface{ BindUpdate() error }{p.sdev, p.cdev} {
		if err := d.BindUpdate(); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip("after BindUpdate ")
	// wireguard-go ignores a second initiation within 20ms as a flood;
	// Down/Up right after the first handshake would wait 5s for a retry.
	time.Sleep(50 * time.Millisecond)
	if err := p.cdev.Down(); err != nil {
		t.Fatal(err)
	}
	if err := p.cdev.Up(); err != nil {
		t.Fatal(err)
	}
	roundTrip("after Down/Up ")
	if c, s := p.cli.Stats().Sessions, p.srv.Stats().Sessions; c != 1 || s != 1 {
		t.Errorf("sessions client=%d server=%d, want the one session to outlive the rebinds", c, s)
	}
}

func TestParseEndpoint(t *testing.T) {
	cli := newTestClient(t, ClientConfig{URL: "ws://127.0.0.1:1"})
	srv, _ := newTestServer(t, ServerConfig{})
	for _, tc := range []struct {
		name    string
		bind    conn.Bind
		in      string
		wantDst string
		wantErr bool
	}{
		{"client, stock endpoint", NewClientBind(cli), "127.0.0.1:51821", "127.0.0.1:51821", false},
		{"client, ipv6", NewClientBind(cli), "[::1]:51820", "[::1]:51820", false},
		{"client, hostname maps to the server", NewClientBind(cli), "shadow.example:443", "127.0.0.1:51820", false},
		{"client, anything maps to the server", NewClientBind(cli), "", "127.0.0.1:51820", false},
		{"server, address", NewServerBind(srv), "192.0.2.7:40000", "192.0.2.7:40000", false},
		{"server, garbage", NewServerBind(srv), "nope", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, err := tc.bind.ParseEndpoint(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && ep.DstToString() != tc.wantDst {
				t.Errorf("DstToString = %q, want %q", ep.DstToString(), tc.wantDst)
			}
		})
	}
	if err := NewClientBind(cli).Send(nil, foreignEndpoint{}); !errors.Is(err, conn.ErrWrongEndpointType) {
		t.Errorf("Send to a foreign endpoint: %v, want ErrWrongEndpointType", err)
	}
}

type foreignEndpoint struct{ conn.Endpoint }

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func() error
	}{
		{"server without prefix", func() error { _, err := NewServer(ServerConfig{}); return err }},
		{"server cert without key", func() error {
			_, err := NewServer(ServerConfig{PathPrefix: "p", Addr: ":0", CertFile: "c"})
			return err
		}},
		{"server tls without address", func() error {
			_, err := NewServer(ServerConfig{PathPrefix: "p", CertFile: "c", KeyFile: "k"})
			return err
		}},
		{"server port 0 destination", func() error {
			_, err := NewServer(ServerConfig{PathPrefix: "p", Destination: netip.MustParseAddrPort("127.0.0.1:0")})
			return err
		}},
		{"client http url", func() error { _, err := NewClient(ClientConfig{URL: "http://h", PathPrefix: "p"}); return err }},
		{"client url with a path", func() error { _, err := NewClient(ClientConfig{URL: "ws://h/x", PathPrefix: "p"}); return err }},
		{"client without prefix", func() error { _, err := NewClient(ClientConfig{URL: "ws://h"}); return err }},
		{"client backoff inverted", func() error {
			_, err := NewClient(ClientConfig{URL: "ws://h", PathPrefix: "p", MinBackoff: time.Second, MaxBackoff: time.Millisecond})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.new(); !errors.Is(err, ErrConfig) {
				t.Errorf("err = %v, want ErrConfig", err)
			}
		})
	}
}
