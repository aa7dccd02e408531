package tunnel

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/syncbuf"

	"github.com/google/go-cmp/cmp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/pkitest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate to dir and returns their paths.
type testPKI struct {
	ca, srvCert, srvKey, cliCert, cliKey string
	// A server certificate of the same CA that expired an hour ago, and one for another name.
	expiredCert, expiredKey, otherNameCert, otherNameKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "test ca")
	write := func(name string, s pkitest.LeafSpec) (string, string) {
		l := ca.Issue(t, s)
		return pkitest.Write(t, dir, name+".crt", l.CertPEM), pkitest.Write(t, dir, name+".key", l.KeyPEM)
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	p := testPKI{ca: pkitest.Write(t, dir, "ca.crt", ca.PEM)}
	p.srvCert, p.srvKey = write("server", pkitest.LeafSpec{Name: "server", IPs: loopback})
	p.cliCert, p.cliKey = write("client", pkitest.LeafSpec{Name: "client", Client: true})
	p.expiredCert, p.expiredKey = write("expired", pkitest.LeafSpec{Name: "expired", IPs: loopback, NotAfter: time.Now().Add(-time.Hour)})
	p.otherNameCert, p.otherNameKey = write("other", pkitest.LeafSpec{Name: "other", DNS: []string{"other.example"}})
	return p
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	srv, addr := newTestServer(t, ServerConfig{CertFile: pki.srvCert, KeyFile: pki.srvKey})
	startServer(t, srv)
	srecv := openBind(t, NewServerBind(srv))

	t.Run("client trusting the CA file, with a client certificate", func(t *testing.T) {
		cli := newTestClient(t, ClientConfig{URL: "wss://" + addr, CAFile: pki.ca, CertFile: pki.cliCert, KeyFile: pki.cliKey})
		r := start(t, cli.Run)
		crecv := openBind(t, NewClientBind(cli))
		cb := NewClientBind(cli)
		ep, _ := cb.ParseEndpoint("127.0.0.1:51820")
		if err := cb.Send([][]byte{[]byte("over tls")}, ep); err != nil { // held until the session is up
			t.Fatal(err)
		}
		got, eps := recvDatagrams(t, srecv, 1, 5*time.Second)
		if diff := cmp.Diff([]string{"over tls"}, got); diff != "" {
			t.Errorf("server got (-want +got):\n%s", diff)
		}
		if err := NewServerBind(srv).Send([][]byte{[]byte("back")}, eps[0]); err != nil {
			t.Fatal(err)
		}
		got, _ = recvDatagrams(t, crecv, 1, 5*time.Second)
		if diff := cmp.Diff([]string{"back"}, got); diff != "" {
			t.Errorf("client got (-want +got):\n%s", diff)
		}
		r.stop(t)
	})

	t.Run("client with system roots refuses the test CA", func(t *testing.T) {
		before := srv.Stats().Sessions
		cli := newTestClient(t, ClientConfig{URL: "wss://" + addr})
		start(t, cli.Run)
		polltest.True(t, "a failed dial", 5*time.Second, func() bool { return cli.Stats().Refused > 0 })
		if st := cli.Stats(); st.Sessions != 0 {
			t.Errorf("client stats %+v, want no session", st)
		}
		if got := srv.Stats().Sessions; got != before {
			t.Errorf("server sessions %d -> %d", before, got)
		}
	})
}

// TestCertificateRefused: a server whose certificate does not verify is never joined, whatever
// is wrong with it; each refusal is counted apart from other failed dials and logged with why.
func TestCertificateRefused(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name, cert, key, ca string
		why                 string // in the refusal's reason
	}{
		{"unknown authority", pki.srvCert, pki.srvKey, "", "unknown authority"},
		{"expired", pki.expiredCert, pki.expiredKey, pki.ca, "expired"},
		{"another name", pki.otherNameCert, pki.otherNameKey, pki.ca, "another name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := newTestServer(t, ServerConfig{CertFile: tc.cert, KeyFile: tc.key})
			startServer(t, srv)
			var logs syncbuf.Buffer
			cli := newTestClient(t, ClientConfig{URL: "wss://" + addr, CAFile: tc.ca,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			start(t, cli.Run)
			polltest.True(t, "a refused certificate", 5*time.Second, func() bool { return cli.Stats().CertRefused > 1 })
			if st := cli.Stats(); st.Sessions != 0 || st.Refused < st.CertRefused {
				t.Errorf("client stats %+v: want no session, every certificate refusal also a failed dial", st)
			}
			if got := srv.Stats().Sessions; got != 0 {
				t.Errorf("server sessions %d, want 0", got)
			}
			out := logs.String()
			if !strings.Contains(out, "tunnel server's certificate refused") || !strings.Contains(out, tc.why) || strings.Contains(out, testPrefix) {
				t.Errorf("log does not say why the certificate was refused (%q), or names the path prefix:\n%s", tc.why, out)
			}
		})
	}
	t.Run("not a certificate error", func(t *testing.T) {
		if why := certificateRefusal(errors.New("dial tcp: connection refused")); why != "" {
			t.Errorf("a refused connection classified as a certificate refusal: %q", why)
		}
	})
}

// TestCAFileAddsToSystemRoots: the CA file adds to the system roots, it does not replace them.
// The system roots are read once per process, so the check runs in a child process whose
// SSL_CERT_FILE names a CA standing in for the public ones.
func TestCAFileAddsToSystemRoots(t *testing.T) {
	if os.Getenv("IKM_TUNNEL_ROOTS_CHILD") == "1" {
		for _, srv := range []struct{ name, cert, key string }{
			{"a server of a system root", os.Getenv("IKM_TUNNEL_SYSTEM_CERT"), os.Getenv("IKM_TUNNEL_SYSTEM_KEY")},
			{"a server of the CA file", os.Getenv("IKM_TUNNEL_PRIVATE_CERT"), os.Getenv("IKM_TUNNEL_PRIVATE_KEY")},
		} {
			s, addr := newTestServer(t, ServerConfig{CertFile: srv.cert, KeyFile: srv.key})
			startServer(t, s)
			cli := newTestClient(t, ClientConfig{URL: "wss://" + addr, CAFile: os.Getenv("IKM_TUNNEL_PRIVATE_CA")})
			r := start(t, cli.Run)
			polltest.True(t, srv.name+": a session", 5*time.Second, func() bool { return cli.Stats().Sessions > 0 })
			r.stop(t)
		}
		return
	}
	dir := t.TempDir()
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	system, private := pkitest.NewCA(t, "a public root"), pkitest.NewCA(t, "a private ca")
	sys, priv := system.Issue(t, pkitest.LeafSpec{Name: "public", IPs: loopback}), private.Issue(t, pkitest.LeafSpec{Name: "private", IPs: loopback})
	cmd := exec.Command(os.Args[0], "-test.run=^TestCAFileAddsToSystemRoots$", "-test.count=1")
	cmd.Env = append(os.Environ(), "IKM_TUNNEL_ROOTS_CHILD=1",
		"SSL_CERT_FILE="+pkitest.Write(t, dir, "roots.pem", system.PEM), "SSL_CERT_DIR="+filepath.Join(dir, "none"),
		"IKM_TUNNEL_SYSTEM_CERT="+pkitest.Write(t, dir, "public.crt", sys.CertPEM), "IKM_TUNNEL_SYSTEM_KEY="+pkitest.Write(t, dir, "public.key", sys.KeyPEM),
		"IKM_TUNNEL_PRIVATE_CERT="+pkitest.Write(t, dir, "private.crt", priv.CertPEM), "IKM_TUNNEL_PRIVATE_KEY="+pkitest.Write(t, dir, "private.key", priv.KeyPEM),
		"IKM_TUNNEL_PRIVATE_CA="+pkitest.Write(t, dir, "private-ca.pem", private.PEM))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("with a CA file, a server of a system root or of the file must both verify: %v\n%s", err, out)
	}
}

// TestClientServerName: the name verified is ServerName, else Host's host part (an ingress dialed
// by address serves the host's certificate), else left to the dial address.
func TestClientServerName(t *testing.T) {
	for _, tc := range []struct{ host, serverName, want string }{
		{"", "", ""},
		{"mesh.example.org", "", "mesh.example.org"},
		{"mesh.example.org:443", "", "mesh.example.org"},
		{"[fd00::1]:443", "", "fd00::1"},
		{"mesh.example.org", "other.example.org", "other.example.org"},
	} {
		tc2, err := clientTLS(ClientConfig{Host: tc.host, ServerName: tc.serverName})
		if err != nil {
			t.Fatal(err)
		}
		if tc2.ServerName != tc.want {
			t.Errorf("Host %q ServerName %q: verified name %q, want %q", tc.host, tc.serverName, tc2.ServerName, tc.want)
		}
	}
}
