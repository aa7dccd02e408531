package imagebuild

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/goldentest"
)

// epoch is the fixed build time of the pure tests.
var epoch = time.Unix(1_700_000_000, 0)

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	goldentest.Check(t, file, got)
}

// sampleTree is a small tree with every entry type, added out of order.
func sampleTree(t *testing.T) *Tree {
	t.Helper()
	tr := NewTree()
	for _, f := range []struct {
		p string
		e Entry
	}{
		{"usr/sbin/xtables-nft-multi", Entry{Type: File, Mode: 0o755, Data: []byte("\x7fELF not really")}},
		{"/usr/sbin/iptables", Entry{Type: Symlink, Mode: 0o777, Target: "iptables-nft"}},
		{"./usr/sbin/iptables-nft", Entry{Type: Symlink, Mode: 0o777, Target: "xtables-nft-multi"}},
		{"tmp", Entry{Type: Dir, Mode: 0o1777}},
		{"home/nonroot", Entry{Type: Dir, Mode: 0o700, UID: 65532, GID: 65532}},
		{"etc/passwd", Entry{Type: File, Mode: 0o644, Data: []byte("root:x:0:0::/root:/sbin/nologin\n")}},
	} {
		if err := tr.Put(f.p, f.e); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// eachEntry calls fn for every header of a tar stream, with a regular file's content.
func eachEntry(t *testing.T, r io.Reader, fn func(h *tar.Header, data []byte)) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fn(h, data)
	}
}

// listing renders a layer's headers one per line, the form of the golden files.
func listing(t *testing.T, layer []byte) string {
	t.Helper()
	var b strings.Builder
	eachEntry(t, bytes.NewReader(layer), func(h *tar.Header, _ []byte) {
		fmt.Fprintf(&b, "%c %04o %d:%d %s", h.Typeflag, h.Mode, h.Uid, h.Gid, h.Name)
		if h.Linkname != "" {
			fmt.Fprintf(&b, " -> %s", h.Linkname)
		}
		if h.Typeflag == tar.TypeReg {
			fmt.Fprintf(&b, " %d", h.Size)
		}
		if !h.ModTime.Equal(epoch) && !h.ModTime.Equal(time.Unix(0, 0)) {
			fmt.Fprintf(&b, " mtime %s", h.ModTime)
		}
		b.WriteString("\n")
	})
	return b.String()
}

func TestTreeTarGolden(t *testing.T) {
	raw, err := sampleTree(t).Tar(epoch.Add(999 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	golden(t, "tree.golden", []byte(listing(t, raw)+"sha256 "+hex.EncodeToString(sum[:])+"\n"))
	again, err := sampleTree(t).Tar(epoch)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, again) {
		t.Error("two identical trees gave different layers")
	}
}

func TestTreePut(t *testing.T) {
	tests := []struct {
		name    string
		puts    []Entry
		path    string
		wantErr bool
	}{
		{name: "same file twice", path: "a/b", puts: []Entry{{Type: File, Data: []byte("x")}, {Type: File, Data: []byte("x")}}},
		{name: "different file", path: "a/b", puts: []Entry{{Type: File, Data: []byte("x")}, {Type: File, Data: []byte("y")}}, wantErr: true},
		{name: "directory again", path: "a", puts: []Entry{{Type: Dir, Mode: 0o755}, {Type: Dir, Mode: 0o700}}},
		{name: "file over directory", path: "a", puts: []Entry{{Type: Dir}, {Type: File}}, wantErr: true},
		{name: "root", path: "/", puts: []Entry{{Type: Dir}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTree()
			var err error
			for _, e := range tt.puts {
				if err = tr.Put(tt.path, e); err != nil {
					break
				}
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("Put error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
	tr := NewTree()
	if err := tr.Put("a/file", Entry{Type: File}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("a/file/below", Entry{Type: File}); err == nil {
		t.Error("a file under a file was accepted")
	}
}

func TestResolve(t *testing.T) {
	tr := sampleTree(t)
	for _, l := range []struct{ link, target string }{
		{"lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so"},
		{"lib/x86_64-linux-gnu/ld.so", "../../usr/sbin/xtables-nft-multi"},
		{"var/run", "../run"},
		{"loop/a", "b"},
		{"loop/b", "a"},
	} {
		if err := tr.Put(l.link, Entry{Type: Symlink, Target: l.target}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ path, want string }{
		{"usr/sbin/iptables", "usr/sbin/xtables-nft-multi"},
		{"/lib64/ld.so", "usr/sbin/xtables-nft-multi"},
		{"/tmp", "tmp"},
		{"var/run", ""},     // dangling: run does not exist
		{"loop/a", ""},      // loop
		{"usr/nothing", ""}, // missing
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, _, err := tr.Resolve(tt.path)
			if (err != nil) != (tt.want == "") {
				t.Fatalf("Resolve(%s) = %q, %v", tt.path, got, err)
			}
			if got != tt.want {
				t.Errorf("Resolve(%s) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}
