package tunnel

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// Defaults shared by ClientConfig and ServerConfig.
const (
	// DefaultPingInterval is wstunnel's ping period.
	DefaultPingInterval = 30 * time.Second
	// DefaultPingMisses is how many unanswered pings end a session.
	DefaultPingMisses = 3
	// DefaultMaxMessageSize is the largest UDP payload (65535) plus one
	// byte of slack, like wstunnel's own limit.
	DefaultMaxMessageSize = 1 << 16
	// DefaultQueueLen is how many received datagrams wait for the Bind.
	DefaultQueueLen = 1024
	// DefaultBatchSize is how many datagrams one receive hands wireguard-go.
	// wireguard-go holds a 64 KiB buffer per datagram in flight and keeps a
	// batch's buffers until the batch is decrypted, so the batch bounds the
	// memory of the receiving device: measured with iperf3 through the mesh,
	// a batch of 8 peaks at 37 MiB where wireguard-go's 128 peaks at 143 MiB,
	// with the same throughput (README).
	DefaultBatchSize = 8
	// DefaultBacklog is how many datagrams sent while no session is up
	// wait for the next one: one wireguard-go batch.
	DefaultBacklog = 128
	// DefaultWriteTimeout bounds one batch write before the session is
	// declared dead.
	DefaultWriteTimeout = 10 * time.Second
)

// DefaultDestination is the WireGuard listener the stock mesh tunnels to.
var DefaultDestination = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 51820)

// ErrConfig is wrapped by every configuration error of NewClient and NewServer.
var ErrConfig = errors.New("invalid tunnel configuration")

// common holds the settings both ends share, normalised.
type common struct {
	destination    netip.AddrPort
	pingInterval   time.Duration
	pingMisses     int
	maxMessageSize int
	queueLen       int
	batchSize      int
	writeTimeout   time.Duration
	log            *slog.Logger
}

func newCommon(dst netip.AddrPort, ping time.Duration, misses, maxMsg, queueLen, batch int, wt time.Duration, log *slog.Logger) (common, error) {
	c := common{
		destination:    orDefault(dst, DefaultDestination),
		pingInterval:   orDefault(ping, DefaultPingInterval),
		pingMisses:     orDefault(misses, DefaultPingMisses),
		maxMessageSize: orDefault(maxMsg, DefaultMaxMessageSize),
		queueLen:       orDefault(queueLen, DefaultQueueLen),
		batchSize:      orDefault(batch, DefaultBatchSize),
		writeTimeout:   orDefault(wt, DefaultWriteTimeout),
		log:            log,
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case !c.destination.IsValid() || c.destination.Port() == 0:
		return c, fmt.Errorf("destination %v: %w", dst, ErrConfig)
	case c.pingInterval < 0 || c.pingMisses < 0 || c.writeTimeout < 0:
		return c, fmt.Errorf("negative ping or timeout setting: %w", ErrConfig)
	case c.maxMessageSize < 0 || c.maxMessageSize > 1<<24:
		return c, fmt.Errorf("max message size %d: %w", maxMsg, ErrConfig)
	case c.queueLen < 0:
		return c, fmt.Errorf("queue length %d: %w", queueLen, ErrConfig)
	case c.batchSize < 1 || c.batchSize > conn.IdealBatchSize:
		return c, fmt.Errorf("batch size %d, want 1 to %d: %w", batch, conn.IdealBatchSize, ErrConfig)
	}
	return c, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// dropOversize returns bufs without the datagrams the peer would refuse,
// counting them; it allocates only when there is one.
func (c *common) dropOversize(bufs [][]byte, st *counters) [][]byte {
	for i, b := range bufs {
		if len(b) <= c.maxMessageSize {
			continue
		}
		kept := append(make([][]byte, 0, len(bufs)), bufs[:i]...)
		for _, b := range bufs[i:] {
			if len(b) <= c.maxMessageSize {
				kept = append(kept, b)
			} else {
				st.txDropped.Add(1)
			}
		}
		return kept
	}
	return bufs
}
