package tunnel

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// TestSlowReceiverLosesNothing: while wireguard-go does not ask for datagrams, the session leaves
// the WebSocket unread and TCP holds the rest, in order; nothing is dropped, however many there
// are. (A queue in between would drop all but its last QueueLen.)
func TestSlowReceiverLosesNothing(t *testing.T) {
	const total, batch = 4000, 100
	srv, addr := newTestServer(t, ServerConfig{QueueLen: 16})
	startServer(t, srv)
	cli := newTestClient(t, ClientConfig{URL: "ws://" + addr})
	start(t, cli.Run)
	recv := openBind(t, NewServerBind(srv))
	polltest.True(t, "session", 5*time.Second, func() bool { return cli.Stats().Active == 1 && srv.Stats().Active == 1 })

	cbind := NewClientBind(cli)
	ep, _ := cbind.ParseEndpoint("127.0.0.1:51820")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		bufs := make([][]byte, batch)
		for i := 0; i < total; i += batch {
			for j := range bufs {
				bufs[j] = binary.BigEndian.AppendUint32(make([]byte, 0, 1000), uint32(i+j))[:1000]
			}
			if err := cbind.Send(bufs, ep); err != nil {
				t.Errorf("send: %v", err)
				return
			}
		}
	}()
	// Nobody receives for a while: everything sent is in flight or sent.
	select {
	case <-sent:
	case <-time.After(time.Second):
	}
	got, _ := recvDatagrams(t, recv, total, 30*time.Second)
	<-sent
	for i, d := range got {
		if n := binary.BigEndian.Uint32([]byte(d)); n != uint32(i) {
			t.Fatalf("datagram %d is number %d: lost or reordered", i, n)
		}
	}
	if st := srv.Stats(); st.RxDropped != 0 || st.RxDatagrams != total {
		t.Errorf("server stats %+v, want %d received and none dropped", st, total)
	}
}
