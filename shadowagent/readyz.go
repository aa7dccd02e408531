package shadowagent

import (
	"net/http"
	"strings"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// handleReadyz answers 200 once the tunnel listens, the device is up and the iptables rules are
// applied, until shutdown begins. It does not wait for the peer: the VK waits for the shadow
// pod before the offloaded pod even exists. A 503 lists what is missing.
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
	if !a.listening.Load() {
		missing = append(missing, "tunnel listener")
	}
	if a.dev.Load() == nil {
		missing = append(missing, "wireguard device")
	}
	if !a.rulesApplied.Load() {
		if a.cfg.Mode == meshspec.ModeNetstack {
			missing = append(missing, "port relays")
		} else {
			missing = append(missing, "netfilter rules")
		}
	}
	return missing
}
