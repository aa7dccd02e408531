package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func (p *Plugin) handleLogs(w http.ResponseWriter, r *http.Request) error {
	var req LogRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	if req.Opts.Follow {
		// A follower ends with a clean end of stream when the plugin stops, not cut by the
		// server's shutdown deadline in the middle of a line.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(p.draining, cancel)()
	}
	stream, err := p.Logs(ctx, &req)
	if err != nil {
		return err
	}
	defer stream.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil && req.Opts.Follow {
		flusher.Flush() // headers now: the API gives up on a silent follower after 120 s
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := stream.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client went away
			}
			if flusher != nil && req.Opts.Follow {
				flusher.Flush()
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
			if p.draining.Err() != nil {
				p.log.Info("log stream ended: the plugin is stopping", "pod", req.Namespace+"/"+req.PodName, "container", req.ContainerName)
			}
			return nil
		}
		if err != nil {
			// Headers are gone; all that is left is to end the stream and say why in the log.
			p.log.Warn("log stream ended", "pod", req.Namespace+"/"+req.PodName, "container", req.ContainerName, "err", err)
			return nil
		}
	}
}

// Logs opens the log of a container of an offloaded pod with the options mapped one to one onto
// the remote pods/log call. With Follow the stream lasts until the container ends or ctx ends.
func (p *Plugin) Logs(ctx context.Context, req *LogRequest) (io.ReadCloser, error) {
	switch {
	case req.PodUID == "":
		return nil, &ValidationError{Field: "PodUID", Reason: "is required"}
	case req.PodName == "":
		return nil, &ValidationError{Field: "PodName", Reason: "is required"}
	case req.Namespace == "":
		return nil, &ValidationError{Field: "Namespace", Reason: "is required"}
	case req.ContainerName == "":
		return nil, &ValidationError{Field: "ContainerName", Reason: "is required"}
	}
	opts, err := podLogOptions(req)
	if err != nil {
		return nil, err
	}
	ns := RemoteNamespace(p.cfg.Offloading.NamespacePrefix, p.cfg.Offloading.NamespacePrefixExclusions, req.Namespace)
	name := ScopedName(req.PodName, req.PodUID)
	if remote, err := p.findRemotePod(ctx, ns, req.PodName, types.UID(req.PodUID)); err != nil {
		return nil, err
	} else if remote != nil {
		name = remote.Name // the Python plugin's name, for a pod it offloaded
	}
	rc, err := p.client.CoreV1().Pods(ns).GetLogs(name, opts).Stream(ctx)
	if err != nil {
		return nil, p.remoteErr("get logs", fmt.Errorf("logs of %s/%s container %s: %w", ns, name, req.ContainerName, err))
	}
	return rc, nil
}

// podLogOptions maps InterLink's options onto the Kubernetes ones; zero values mean "not set".
func podLogOptions(req *LogRequest) (*corev1.PodLogOptions, error) {
	o := req.Opts
	for _, f := range []struct {
		name string
		v    int
	}{{"Opts.Tail", o.Tail}, {"Opts.Bytes", o.LimitBytes}, {"Opts.SinceSeconds", o.SinceSeconds}} {
		if f.v < 0 {
			return nil, &ValidationError{Field: f.name, Reason: "must not be negative"}
		}
	}
	if o.SinceSeconds > 0 && !o.SinceTime.IsZero() {
		return nil, &ValidationError{Field: "Opts.SinceTime", Reason: "set either SinceSeconds or SinceTime, not both"}
	}
	opts := &corev1.PodLogOptions{
		Container:  req.ContainerName,
		Follow:     o.Follow,
		Previous:   o.Previous,
		Timestamps: o.Timestamps,
	}
	if o.Tail > 0 {
		opts.TailLines = new(int64(o.Tail))
	}
	if o.LimitBytes > 0 {
		opts.LimitBytes = new(int64(o.LimitBytes))
	}
	if o.SinceSeconds > 0 {
		opts.SinceSeconds = new(int64(o.SinceSeconds))
	}
	if !o.SinceTime.IsZero() {
		opts.SinceTime = &metav1.Time{Time: o.SinceTime}
	}
	return opts, nil
}
