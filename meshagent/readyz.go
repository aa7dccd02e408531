package meshagent

import (
	"net/http"
)

// handleReadyz answers 200 once the first WireGuard handshake completed, then for the life of the
// process: it gates startup, and a later tunnel outage does not make the pod unready (the
// tunnel reconnects by itself; see the metrics for its state).
func (a *Agent) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	if !a.ready.Load() {
		http.Error(w, "waiting for the first wireguard handshake", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}
