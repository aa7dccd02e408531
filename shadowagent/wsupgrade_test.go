package shadowagent

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// wsUpgrade performs a valid wstunnel upgrade by hand on c and returns the reader positioned
// after the 101 response.
func wsUpgrade(c net.Conn, host, prefix string) (*bufio.Reader, error) {
	tok, err := tunnel.BuildToken(tunnel.UDPClaims(tunnel.DefaultDestination), []byte("any key"))
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(c, "GET /%s/events HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		prefix, host, base64.StdEncoding.EncodeToString(key), strings.Join(tunnel.BuildProtocols(tok), ", "))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("upgrade = %s, want 101", resp.Status)
	}
	return br, nil
}
