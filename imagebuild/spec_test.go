package imagebuild

import (
	"os"
	"strings"
	"testing"
)

func TestParseSpecErrors(t *testing.T) {
	head := "registry: r\nsource: s\nplatforms: [linux/amd64]\nimages:\n"
	tests := []struct{ name, in, wantErr string }{
		{"unknown field", head + "  - {name: a, binary: ./a, colour: red}\n", "colour"},
		{"bad platform", "registry: r\nsource: s\nplatforms: [linux/s390x]\n", "platform"},
		{"no binary", head + "  - {name: a}\n", "binary, file or entrypoint"},
		{"binary and file", head + "  - {name: a, binary: ./a, file: /b/a}\n", "exclude each other"},
		{"file on two platforms", "registry: r\nsource: s\nplatforms: [linux/amd64, linux/arm64]\nimages:\n  - {name: a, file: /b/a}\n", "one platform"},
		{"variable file name", head + "  - {name: a, file: \"/b/${X}\"}\n", "not the file"},
		{"same binary twice", head + "  - {name: a, binary: ./cmd/x}\n  - {name: b, file: /b/x}\n", "binary named x"},
		{"repeated", head + "  - {name: a, binary: ./a}\n  - {name: a, binary: ./a}\n", "repeated"},
		{"other user", head + "  - {name: a, binary: ./a, user: 1000}\n", "user must be"},
		{"port", head + "  - {name: a, binary: ./a, ports: [http]}\n", "port"},
		{"env without a value", head + "  - {name: a, binary: ./a, env: [DEBUG]}\n", "NAME=value"},
		{"env setting PATH", head + "  - {name: a, binary: ./a, env: [PATH=/x]}\n", "PATH"},
		{"relative link", head + "  - {name: a, binary: ./a, symlinks: {bin/sh: busybox}}\n", "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSpec error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestProjectSpec checks images/images.yaml against images/debs.lock: every package is pinned for
// every platform, and a bare name and {name, paths} both parse.
func TestProjectSpec(t *testing.T) {
	spec, lock := projectSpec(t)
	pkgs, err := spec.Packages(lock)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != len(lock) {
		t.Errorf("the spec uses %d of the %d locked packages: relock to drop the others", len(pkgs), len(lock))
	}
	sa, ok := spec.Image("shadow-agent")
	if !ok {
		t.Fatal("no shadow-agent image")
	}
	var wg DebSpec
	for _, d := range sa.Debs {
		if d.Name == "wireguard-tools" {
			wg = d
		}
	}
	if len(wg.Paths) != 1 || wg.Paths[0] != "usr/bin/wg" {
		t.Errorf("wireguard-tools in shadow-agent = %+v", wg)
	}
}

func projectSpec(t *testing.T) (Spec, Lock) {
	t.Helper()
	b, err := os.ReadFile("../images/images.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ParseSpec(b)
	if err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile("../images/debs.lock")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := ParseLock(b)
	if err != nil {
		t.Fatal(err)
	}
	return spec, lock
}
