package tunnel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate to dir and returns their paths.
type testPKI struct{ ca, srvCert, srvKey, cliCert, cliKey string }

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	p := testPKI{ca: write("ca.crt", "CERTIFICATE", caDER)}
	p.srvCert, p.srvKey = leaf("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.cliCert, p.cliKey = leaf("client", 3, x509.ExtKeyUsageClientAuth, nil)
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
