package imagebuild

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sum = "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"

func TestParseLock(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Lock
		wantErr string
	}{
		{name: "entries and comments", in: "# c\n\nlibc6 amd64 2.36-9 " + sum + "\nnetbase all 6.4 " + sum + "\n",
			want: Lock{{"libc6", "amd64", "2.36-9", sum}, {"netbase", "all", "6.4", sum}}},
		{name: "field missing", in: "libc6 amd64 " + sum, wantErr: "line 1"},
		{name: "not a checksum", in: "libc6 amd64 1 abc", wantErr: "not a SHA-256"},
		{name: "pinned twice", in: "a amd64 1 " + sum + "\na amd64 2 " + sum, wantErr: "pinned twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLock([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLock error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseLock (-want +got):\n%s", diff)
			}
			again, err := ParseLock(got.Format())
			if err != nil || !cmp.Equal(got, again) {
				t.Errorf("Format does not round-trip: %v\n%s", err, got.Format())
			}
		})
	}
	l := Lock{{"netbase", "all", "6.4", sum}, {"libc6", "arm64", "2", sum}}
	if p, ok := l.Find("netbase", "arm64"); !ok || p.Arch != "all" {
		t.Errorf("Find(netbase, arm64) = %+v, %v; want the arch-all package", p, ok)
	}
	if _, ok := l.Find("libc6", "amd64"); ok {
		t.Error("Find(libc6, amd64) found the arm64 package")
	}
	if got := (Package{Name: "busybox-static", Arch: "amd64", Version: "1:1.35"}).File(); got != "busybox-static_1%3a1.35_amd64.deb" {
		t.Errorf("File() = %s", got)
	}
}

func FuzzParseLock(f *testing.F) {
	f.Add("libc6 amd64 2.36-9 " + sum + "\n# x\n")
	f.Add("a b c d e")
	f.Fuzz(func(t *testing.T, in string) {
		l, err := ParseLock([]byte(in))
		if err != nil {
			return
		}
		again, err := ParseLock(l.Format())
		if err != nil || len(again) != len(l) {
			t.Fatalf("formatted lock does not parse back: %v", err)
		}
	})
}
