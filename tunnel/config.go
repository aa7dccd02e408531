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
	// DefaultQueueLen is how many datagrams received while the Bind is
	// closed wait for it to reopen.
	DefaultQueueLen = 1024
	// DefaultBatchSize is the most datagrams one receive hands wireguard-go:
	// a receive takes what the WebSocket has already delivered, up to this
	// many. wireguard-go keeps a 64 KiB buffer for each slot of the batch and
	// for each datagram in flight (bounded by DefaultInFlight); its TUN
	// coalesces the TCP segments of one batch into few super-packets, which
	// is where bigger batches pay. Measured with iperf3 through the mesh, 32
	// gives the throughput of 64 and 128 at 33 MiB instead of 44-47 MiB for
	// the receiving agent (docs/performance.md).
	DefaultBatchSize = 32
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
