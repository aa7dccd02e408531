package meshagent

import (
	"net/http"
)

// handleHealthz answers 200 while the device is up and its link is administratively up, for a
// liveness probe. It does not depend on the tunnel: an ingress outage must not restart the pod.
func (a *Agent) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	if a.stack.Load() != nil && a.dev.Load() != nil {
		_, _ = w.Write([]byte("ok\n")) // netstack mode: no link to check
		return
	}
	k := a.kern.Load()
	if k == nil || a.dev.Load() == nil {
		http.Error(w, "wireguard device not up", http.StatusServiceUnavailable)
		return
	}
	if err := k.CheckUp(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
