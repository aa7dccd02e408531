package shadowagent

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// MeshLostAfter is how old the last WireGuard handshake with the offloaded pod may be before the
// shadow reports the mesh lost: WireGuard's REJECT_AFTER_TIME. A live peer re-handshakes every
// 2 minutes (its keepalives are traffic); past 3, its session keys are refused and nothing flows.
const MeshLostAfter = 180 * time.Second

// handleReadyz answers 200 once the tunnel listens (a dialing shadow does not wait for its
// peer), the device is up and the iptables rules are
// applied, until shutdown begins, and 503 again while a mesh that was up is lost (no handshake
// for MeshLostAfter). It does not wait for the peer's first handshake: the VK waits for the
// shadow pod before the offloaded pod even exists. The shadow pod's Service publishes its
// address whatever its readiness, so a lost mesh can come back through the ingress. A 503 lists
// what is missing.
func (a *Agent) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	if missing := a.notReady(); len(missing) > 0 {
		http.Error(w, "not ready: "+strings.Join(missing, ", "), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// notReady lists what readiness waits for; nil means ready.
func (a *Agent) notReady() []string {
	if a.stopping.Load() {
		return []string{"shutting down"}
	}
	var missing []string
	if !a.tunnelListening() {
		missing = append(missing, "tunnel listener")
	}
	if a.eng.Load() == nil {
		missing = append(missing, "wireguard device")
	}
	if !a.rulesApplied.Load() {
		if a.cfg.Mode == meshspec.ModeNetstack {
			missing = append(missing, "port relays")
		} else {
			missing = append(missing, "netfilter rules")
		}
	}
	if lost := a.meshLost(time.Now()); lost != "" {
		missing = append(missing, lost)
	}
	return missing
}

// meshLost describes a mesh that was up and is lost, or returns "". It logs each change.
func (a *Agent) meshLost(now time.Time) string {
	e := a.eng.Load()
	if e == nil {
		return ""
	}
	last := a.lastHandshake
	if last == nil {
		last = func() (time.Time, error) {
			p, err := e.Peer()
			return p.LastHandshake, err
		}
	}
	at, err := last()
	if err != nil || at.IsZero() {
		return "" // never up: the offloaded pod may not exist yet
	}
	age := now.Sub(at)
	lost := age > MeshLostAfter
	if a.lost.Swap(lost) != lost {
		if lost {
			a.log.Warn("mesh to the offloaded pod lost: no WireGuard handshake for longer than "+MeshLostAfter.String()+"; not ready until it is back",
				"last_handshake_age", age.Round(time.Second))
		} else {
			a.log.Info("mesh to the offloaded pod back")
		}
	}
	if !lost {
		return ""
	}
	return fmt.Sprintf("mesh to the offloaded pod lost (last WireGuard handshake %v ago)", age.Round(time.Second))
}
