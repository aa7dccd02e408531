package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestHelpDocumentsFlagsAndConfig(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"--help"}, env(nil), &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help = %v", err)
	}
	help := out.String()
	for _, want := range []string{"-config", "MESH_AGENT_CONFIG", "-listen", "MESH_AGENT_LISTEN", "-ready-file", "MESH_AGENT_READY_FILE",
		"-uapi-dir", "MESH_AGENT_UAPI_DIR", "-log-level", "-log-format", "-version", "/etc/mesh-agent/mesh.json", ":9101"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	// Every field of a full mesh.json is described.
	for _, field := range specFields(t) {
		if !strings.Contains(help, "  "+field+" ") {
			t.Errorf("--help does not describe config field %q", field)
		}
	}
}

// specFields lists the JSON paths of a spec with every field set.
func specFields(t *testing.T) []string {
	k, _ := meshspec.GeneratePrivateKey()
	p, _ := meshspec.GeneratePrivateKey()
	b, err := meshspec.Marshal(meshspec.Spec{
		PrivateKey: k, PeerPublicKey: p.PublicKey(), DNS: meshspec.DNS{Searches: []string{"x"}},
		Routes: nil, Tunnel: meshspec.Tunnel{URL: "wss://h", PathPrefix: "p", Host: "h", Unmasked: true, CAFile: "/ca"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fields := []string{"routes"}
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok && k == "tunnel" {
			for sk := range sub {
				fields = append(fields, k+"."+sk)
			}
			continue
		}
		fields = append(fields, k)
	}
	return fields
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, env(nil), &out, &out); err != nil || out.String() != "mesh-agent dev\n" {
		t.Fatalf("run --version = %v, %q", err, out.String())
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "mesh.json")
	k, _ := meshspec.GeneratePrivateKey()
	p, _ := meshspec.GeneratePrivateKey()
	b, err := meshspec.Marshal(meshspec.Spec{PrivateKey: k, PeerPublicKey: p.PublicKey(), Tunnel: meshspec.Tunnel{URL: "ws://127.0.0.1:1", PathPrefix: "sekrit-prefix"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, b, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version":"v1","mtu":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "flag provided but not defined"},
		{"extra argument", []string{"extra"}, nil, "unexpected arguments"},
		{"bad log level", []string{"--log-level", "loud", "--config", good}, nil, "parse log level"},
		{"bad log format", nil, map[string]string{"MESH_AGENT_LOG_FORMAT": "xml", "MESH_AGENT_CONFIG": good}, `log format "xml"`},
		{"config from env", nil, map[string]string{"MESH_AGENT_CONFIG": filepath.Join(dir, "missing.json")}, "missing.json"},
		{"invalid config", []string{"--config", bad}, nil, "bad.json: parse mesh spec: tunnel: required"},
		{"cannot listen", []string{"--config", good, "--listen", "256.0.0.1:1"}, nil, "listen for health and metrics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, logs bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := run(ctx, tc.args, env(tc.env), &out, &logs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(logs.String(), "sekrit-prefix") || strings.Contains(err.Error(), "sekrit-prefix") {
				t.Errorf("the path prefix leaked: %v\n%s", err, logs.String())
			}
		})
	}
}
