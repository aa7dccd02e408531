package wgdevice

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/usernet"
)

// Bind is the tunnel's end of a device: a conn.Bind that also wraps the device's TUN, so that
// what the device holds to send stays bounded (tunnel.ClientBind and tunnel.ServerBind).
type Bind interface {
	conn.Bind
	TUN(tun.Device) tun.Device
}

// Identity is a device's WireGuard identity and its one peer: the mesh's shape on either side.
type Identity struct {
	PrivateKey, PeerPublicKey meshspec.Key
	// Endpoint labels the peer for the Bind, which sends everything over its tunnel: the
	// destination the tunnel asks for, as in the stock mesh's wg config.
	Endpoint netip.AddrPort
	// ListenPort, when non-zero, is what wg(8) shows as the device's port; the Bind opens none.
	ListenPort uint16
	// Keepalive is the persistent keepalive interval (whole seconds; zero: none).
	Keepalive time.Duration
	// AllowedIPs are the addresses the peer may send from, and that the device sends to it.
	AllowedIPs []netip.Prefix
}

// UAPI is the WireGuard UAPI "set" text that gives a device this identity, replacing any peer.
// A pure function of the identity, it contains the private key: hand it to IpcSet, never to a
// logger.
func (id Identity) UAPI() string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(id.PrivateKey[:]))
	if id.ListenPort != 0 {
		fmt.Fprintf(&b, "listen_port=%d\n", id.ListenPort)
	}
	b.WriteString("replace_peers=true\n")
	fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(id.PeerPublicKey[:]))
	fmt.Fprintf(&b, "endpoint=%s\n", id.Endpoint)
	fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(id.Keepalive/time.Second))
	b.WriteString("replace_allowed_ips=true\n")
	for _, p := range id.AllowedIPs {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p)
	}
	return b.String()
}

// Config is one device for Start.
type Config struct {
	// Identity is the device's keys and its peer.
	Identity Identity
	// Bind carries the device's datagrams; required.
	Bind Bind
	// Netstack, when set, configures the user-space network stack the device runs on (netstack
	// mode: no TUN device, no capability); its address and MTU default to Link's, its logger to
	// Logger's. Nil: kernel mode, a TUN device named Link.Name with Link applied to it; the
	// process needs what CheckKernelMode checks.
	Netstack *usernet.Config
	// Link is the device's address and MTU in either mode, and in kernel mode its interface and
	// routes.
	Link LinkPlan
	// UAPISocket, when set, is where ServeUAPI serves the device's UAPI for wg(8).
	UAPISocket string
	// Logger receives the device's log lines; nil discards them.
	Logger *slog.Logger
}

// Engine is one WireGuard device up: created on a TUN device or a user-space stack, configured
// with its identity, its interface's address and routes applied in kernel mode, its UAPI socket
// open. Both agents run one; what differs between them (which end of the tunnel, iptables or
// relays, where the configuration comes from) stays theirs. Close undoes all of it.
type Engine struct {
	dev   *device.Device
	link  *Link          // kernel mode only
	stack *usernet.Stack // netstack mode only
	uapi  *UAPISocket
	log   *slog.Logger

	closeOnce sync.Once
}

// Start brings a device up. It runs on the calling goroutine's thread: in kernel mode the TUN
// device and the netlink socket are created in that thread's network namespace, and keep it.
// A failure half-way undoes what was done and returns the error.
func Start(cfg Config) (_ *Engine, err error) {
	if cfg.Bind == nil {
		return nil, errors.New("start wireguard device: no bind")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{log: cfg.Logger}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	var dev tun.Device
	if cfg.Netstack != nil {
		ns := *cfg.Netstack
		if len(ns.Addresses) == 0 && cfg.Link.Address.IsValid() {
			ns.Addresses = []netip.Addr{cfg.Link.Address.Addr()}
		}
		if ns.MTU == 0 {
			ns.MTU = cfg.Link.MTU
		}
		if ns.Logger == nil {
			ns.Logger = cfg.Logger.With("component", "usernet")
		}
		if e.stack, err = usernet.New(ns); err != nil {
			return nil, err
		}
		dev = e.stack
	} else {
		if err := CheckKernelMode(); err != nil {
			return nil, err
		}
		if e.link, err = OpenLink(); err != nil {
			return nil, err
		}
		if dev, err = tun.CreateTUN(cfg.Link.Name, cfg.Link.MTU); err != nil {
			return nil, fmt.Errorf("create tun device %s: %w", cfg.Link.Name, err)
		}
	}
	// The device owns the TUN (or the stack) from here: its Close closes it, which deletes the
	// link in kernel mode and ends every flow in netstack mode.
	e.dev = device.NewDevice(cfg.Bind.TUN(dev), cfg.Bind, NewLogger(cfg.Logger))
	if err := e.dev.IpcSet(cfg.Identity.UAPI()); err != nil {
		return nil, fmt.Errorf("configure wireguard device: %w", err)
	}
	if e.link != nil {
		if err := e.link.Apply(cfg.Link); err != nil {
			return nil, err
		}
	}
	if err := e.dev.Up(); err != nil {
		return nil, fmt.Errorf("bring wireguard device up: %w", err)
	}
	if cfg.UAPISocket != "" {
		if e.uapi, err = ListenUAPI(cfg.UAPISocket); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// ServeUAPI serves the UAPI socket until Close; it returns at once without one.
func (e *Engine) ServeUAPI() error {
	if e.uapi == nil {
		return nil
	}
	return e.uapi.Serve(e.dev)
}

// Close closes the UAPI socket (deleting its file), removes the address and routes Start
// added, and closes the device with its TUN or stack. It may be called more than once.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		if e.uapi != nil {
			e.uapi.Close()
		}
		if e.link != nil {
			if err := e.link.Remove(); err != nil {
				e.log.Warn("remove routes and address", "err", err)
			}
		}
		switch {
		case e.dev != nil:
			e.dev.Close() // with its TUN or stack
		case e.stack != nil:
			e.stack.Close()
		}
		if e.link != nil {
			e.link.Close()
		}
	})
}

// Device is the wireguard-go device, for what the engine does not cover.
func (e *Engine) Device() *device.Device { return e.dev }

// Stack is the user-space network stack in netstack mode, nil in kernel mode. It is the
// engine's: closed by Close.
func (e *Engine) Stack() *usernet.Stack { return e.stack }

// Peer reads the state of the device's one peer.
func (e *Engine) Peer() (Peer, error) { return ReadPeer(e.dev) }

// CheckUp reports whether the device's link is administratively up: nil in netstack mode, which
// has no link.
func (e *Engine) CheckUp() error {
	if e.link == nil {
		return nil
	}
	return e.link.CheckUp()
}

// Rehandshake renews the keys with the peer: after the tunnel reconnected, the other end may
// have restarted and drop data under the old keys until WireGuard's own timers renew them (15 s
// or more). The current keys stay valid for receiving until the new ones arrive.
func (e *Engine) Rehandshake(peer meshspec.Key) error {
	p := e.dev.LookupPeer(device.NoisePublicKey(peer))
	if p == nil {
		return errors.New("rehandshake: no such peer")
	}
	p.ExpireCurrentKeypairs()
	return p.SendHandshakeInitiation(false)
}

// ServeHealthz answers a liveness probe for the engine e (nil: not up yet, or stopped): 200
// while the device is up and its link administratively up. It depends neither on the peer nor
// on the tunnel: an outage on the other side must not restart the pod.
func ServeHealthz(w http.ResponseWriter, e *Engine) {
	if e == nil {
		http.Error(w, "wireguard device not up", http.StatusServiceUnavailable)
		return
	}
	if err := e.CheckUp(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Running holds an agent's engine while it is up, for its probes and metrics, which read it
// from other goroutines. The zero value holds none.
type Running struct{ e atomic.Pointer[Engine] }

// Start starts an engine (Start) and holds it.
func (r *Running) Start(cfg Config) (*Engine, error) {
	e, err := Start(cfg)
	if err != nil {
		return nil, err
	}
	r.e.Store(e)
	return e, nil
}

// Stop lets go of the engine and closes it; nothing without one.
func (r *Running) Stop() {
	if e := r.e.Swap(nil); e != nil {
		e.Close()
	}
}

// Load returns the engine, nil while none is up.
func (r *Running) Load() *Engine { return r.e.Load() }
