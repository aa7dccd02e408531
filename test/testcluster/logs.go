package testcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// logsResource is kwok's Logs resource: it tells the kwok controller which file serves a fake
// container's log, so `pods/log` requests go through the real apiserver to real bytes.
var logsResource = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

// LogLine is one entry of a container log.
type LogLine struct {
	Time   time.Time
	Stream string // "stdout" or "stderr"; empty means stdout
	Text   string
}

// ContainerLogs describes the log of one container of a fake pod.
type ContainerLogs struct {
	Container string
	Lines     []LogLine
	// Previous is the log of the container's previous instance, served for ?previous=true.
	Previous []LogLine
	// Follow makes the kwok controller keep streaming lines appended to the file.
	Follow bool
}

// SetLogs serves logs for the containers of a pod through the apiserver's pods/log. It returns the
// path of each container's current log file, keyed by container name, so a test can append lines
// (AppendLog) while a follower reads.
func (c *Cluster) SetLogs(t testing.TB, namespace, pod string, logs ...ContainerLogs) map[string]string {
	t.Helper()
	dir := t.TempDir()
	paths := make(map[string]string, len(logs))
	specs := make([]any, 0, len(logs))
	for _, l := range logs {
		spec := map[string]any{"containers": []any{l.Container}, "follow": l.Follow}
		path := filepath.Join(dir, l.Container+".log")
		writeLog(t, path, l.Lines)
		spec["logsFile"] = path
		paths[l.Container] = path
		if l.Previous != nil {
			prev := filepath.Join(dir, l.Container+".previous.log")
			writeLog(t, prev, l.Previous)
			spec["previousLogsFile"] = prev
		}
		specs = append(specs, spec)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Logs",
		"metadata":   map[string]any{"name": pod, "namespace": namespace},
		"spec":       map[string]any{"logs": specs},
	}}
	if _, err := c.Dynamic.Resource(logsResource).Namespace(namespace).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create kwok Logs for %s/%s: %v", namespace, pod, err)
	}
	return paths
}

// AppendLog appends lines to a log file returned by SetLogs.
func AppendLog(t testing.TB, path string, lines ...LogLine) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(FormatCRI(lines...)); err != nil {
		t.Fatalf("append log: %v", err)
	}
}

// FormatCRI renders lines in the CRI log format the kwok controller serves:
// "<RFC 3339 time> <stream> F <text>\n" per line.
func FormatCRI(lines ...LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		stream := l.Stream
		if stream == "" {
			stream = "stdout"
		}
		fmt.Fprintf(&b, "%s %s F %s\n", l.Time.UTC().Format(time.RFC3339Nano), stream, l.Text)
	}
	return b.String()
}

func writeLog(t testing.TB, path string, lines []LogLine) {
	t.Helper()
	if err := os.WriteFile(path, []byte(FormatCRI(lines...)), 0o644); err != nil {
		t.Fatalf("write log: %v", err)
	}
}
