package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// SessionHeader is the header InterLink adds to every call; the plugin logs it with each request.
const SessionHeader = "InterLink-Http-Session"

// Handler returns the plugin's HTTP API: InterLink's calls plus health, readiness, metrics and docs.
func (p *Plugin) Handler() http.Handler {
	mux := http.NewServeMux()
	api := func(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
		return p.instrument(route, h)
	}
	mux.Handle("GET /status", api("/status", p.handleStatus))
	mux.Handle("POST /status", api("/status", p.handleStatus))
	mux.Handle("GET /getLogs", api("/getLogs", p.handleLogs))
	mux.Handle("POST /getLogs", api("/getLogs", p.handleLogs))
	mux.Handle("POST /create", api("/create", p.handleCreate))
	mux.Handle("POST /delete", api("/delete", p.handleDelete))
	mux.Handle("DELETE /delete", api("/delete", p.handleDelete))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("GET /readyz", api("/readyz", p.handleReady))
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /docs", serveDocsPage)
	if d := p.cfg.DocsPath; d != "" && d != "/docs" {
		mux.HandleFunc("GET "+d, serveDocsPage)
	}
	mux.HandleFunc("GET /docs/openapi.json", serveOpenAPI)
	if p.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// instrument wraps a handler that returns an error: it limits the body, counts and times the
// request, logs it with its InterLink session, and turns the error into a reply (writeError).
func (p *Plugin) instrument(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		limit := p.cfg.MaxBodyBytes
		if route == "/status" {
			limit *= statusBodyFactor
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		rw := &statusWriter{ResponseWriter: w}
		err := h(rw, r)
		if err != nil {
			if rw.status != 0 {
				p.log.Warn("error after reply started", "route", route, "err", err)
			} else {
				writeError(rw, err)
			}
		}
		code := rw.status
		if code == 0 {
			code = http.StatusOK
		}
		p.metrics.observe(route, code, time.Since(start))
		level := p.log.Debug
		if code >= 500 {
			level = p.log.Error
		} else if code >= 400 {
			level = p.log.Warn
		}
		args := []any{"method", r.Method, "route", route, "code", code, "duration", time.Since(start).Round(time.Microsecond), "session", r.Header.Get(SessionHeader)}
		if err != nil {
			args = append(args, "err", err)
		}
		level("request", args...)
	})
}

// statusWriter remembers the status code; it keeps Flush working for log streams.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// HTTPStatus maps an error to the status code of its reply. It is the only place that does.
func HTTPStatus(err error) int {
	var (
		verr *ValidationError
		derr *decodeError
		merr *http.MaxBytesError
		nerr net.Error
	)
	switch {
	case errors.As(err, &merr), apierrors.IsRequestEntityTooLargeError(err):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &derr):
		return http.StatusBadRequest
	case errors.As(err, &verr):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrForeignObject):
		return http.StatusConflict
	case errors.Is(err, ErrPodDeleted):
		return http.StatusGone
	case apierrors.IsForbidden(err):
		return http.StatusForbidden
	case apierrors.IsNotFound(err):
		return http.StatusNotFound
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return http.StatusConflict
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return http.StatusUnprocessableEntity
	case apierrors.IsTooManyRequests(err):
		return http.StatusTooManyRequests
	case apierrors.IsUnauthorized(err):
		return http.StatusBadGateway // the plugin's own remote credentials are refused
	case apierrors.IsServiceUnavailable(err), apierrors.IsTimeout(err),
		apierrors.IsServerTimeout(err), errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, err error) {
	code := HTTPStatus(err)
	body := ErrorResponse{Error: err.Error()}
	var verr *ValidationError
	if errors.As(err, &verr) {
		body.Field = verr.Field
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusServiceUnavailable {
		// The remote side is not ready now; InterLink (or a person) may try again shortly.
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (p *Plugin) handleReady(w http.ResponseWriter, r *http.Request) error {
	if !p.Synced() {
		return &unavailableError{"the remote pod cache is not synced yet"}
	}
	rctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if _, err := p.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx); err != nil {
		return p.remoteErr("readyz", &unavailableError{"remote cluster unreachable: " + err.Error()})
	}
	_, err := w.Write([]byte("ok\n"))
	return err
}

// unavailableError reports that the remote side cannot serve now (503).
type unavailableError struct{ msg string }

func (e *unavailableError) Error() string   { return e.msg }
func (e *unavailableError) Timeout() bool   { return false }
func (e *unavailableError) Temporary() bool { return true }

var _ net.Error = (*unavailableError)(nil)

// ErrSocketInUse refuses to serve on a unix socket that another live process is serving.
var ErrSocketInUse = errors.New("another process is serving this socket")

// Serve serves h on network/address until ctx ends. A stale unix socket file (nothing answers on
// it) is replaced, a live one is refused with ErrSocketInUse, and the new one is made 0660.
func Serve(ctx context.Context, network, address string, h http.Handler) error {
	if network == "unix" {
		if fi, err := os.Lstat(address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			// A socket that answers belongs to a live process (another plugin): removing it would
			// cut that process off from InterLink without a word.
			if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
				c.Close()
				return fmt.Errorf("listen: %s: %w", address, ErrSocketInUse)
			}
			if err := os.Remove(address); err != nil {
				return fmt.Errorf("remove stale socket: %w", err)
			}
		}
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if network == "unix" {
		if err := os.Chmod(address, 0o660); err != nil {
			ln.Close()
			return fmt.Errorf("chmod socket: %w", err)
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // log followers outlived the grace period
	}
	<-done
	return nil
}
