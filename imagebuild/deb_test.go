package imagebuild

import (
	"archive/tar"
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDebFilterKeep(t *testing.T) {
	f := debFilter{exclude: []string{"usr/share/doc", "usr/lib/*/gconv"}}
	only := debFilter{only: []string{"usr/bin/wg"}, exclude: f.exclude}
	tests := []struct {
		name   string
		f      debFilter
		path   string
		keep   bool
		reason string
	}{
		{"library", f, "lib/x86_64-linux-gnu/libc.so.6", true, "not excluded"},
		{"doc", f, "usr/share/doc/libc6/changelog.gz", false, "under an excluded directory"},
		{"copyright", f, "usr/share/doc/libc6/copyright", true, "licenses always ship"},
		{"gconv by glob", f, "usr/lib/aarch64-linux-gnu/gconv/UTF-16.so", false, "glob matches a parent"},
		{"only: listed", only, "usr/bin/wg", true, "listed"},
		{"only: other", only, "usr/bin/wg-quick", false, "not listed"},
		{"only: copyright", only, "usr/share/doc/wireguard-tools/copyright", true, "licenses always ship"},
		{"nested copyright", f, "usr/share/doc/libc6/examples/copyright", false, "only a package's own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.keep(tt.path); got != tt.keep {
				t.Errorf("keep(%s) = %v, want %v (%s)", tt.path, got, tt.keep, tt.reason)
			}
		})
	}
}

// debTar builds a package data archive as dpkg-deb --fsys-tarfile prints it.
func debTar(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Name))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(h.Name))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestAddDebTar(t *testing.T) {
	data := debTar(t,
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "./etc/wireguard/", Typeflag: tar.TypeDir, Mode: 0o700},
		&tar.Header{Name: "./usr/bin/wg", Typeflag: tar.TypeReg, Mode: 0o755, Uid: 1000, Uname: "builder"},
		&tar.Header{Name: "./usr/bin/wg-alias", Typeflag: tar.TypeLink, Linkname: "./usr/bin/wg", Mode: 0o755},
		&tar.Header{Name: "./usr/sbin/wg", Typeflag: tar.TypeSymlink, Linkname: "../bin/wg"},
		&tar.Header{Name: "./usr/share/doc/wireguard-tools/changelog.gz", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "./usr/share/doc/wireguard-tools/copyright", Typeflag: tar.TypeReg, Mode: 0o644},
	)
	tr := NewTree()
	if err := addDebTar(tr, bytes.NewReader(data), debFilter{exclude: []string{"usr/share/doc"}}); err != nil {
		t.Fatal(err)
	}
	raw, err := tr.Tar(epoch)
	if err != nil {
		t.Fatal(err)
	}
	want := `5 0755 0:0 etc/
5 0700 0:0 etc/wireguard/
5 0755 0:0 usr/
5 0755 0:0 usr/bin/
0 0755 0:0 usr/bin/wg 12
0 0755 0:0 usr/bin/wg-alias 12
5 0755 0:0 usr/sbin/
2 0777 0:0 usr/sbin/wg -> ../bin/wg
5 0755 0:0 usr/share/
5 0755 0:0 usr/share/doc/
5 0755 0:0 usr/share/doc/wireguard-tools/
0 0644 0:0 usr/share/doc/wireguard-tools/copyright 41
`
	if diff := cmp.Diff(want, listing(t, raw)); diff != "" {
		t.Errorf("layer (-want +got):\n%s", diff)
	}
	bad := debTar(t, &tar.Header{Name: "./dev/null", Typeflag: tar.TypeChar})
	if err := addDebTar(NewTree(), bytes.NewReader(bad), debFilter{}); err == nil {
		t.Error("a device node was accepted")
	}
}
