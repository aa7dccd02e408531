package plugin

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestScopedName(t *testing.T) {
	uid := "0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11"
	tests := []struct {
		name, in, uid, want string
	}{
		{name: "plain", in: "web", uid: uid, want: "web-" + uid},
		{name: "uppercase and dots", in: "My.App_1", uid: uid, want: "my-app-1-" + uid},
		{name: "long name cut, uid whole", in: strings.Repeat("a", 80), uid: uid, want: strings.Repeat("a", 26) + "-" + uid},
		{name: "cut leaves no trailing dash", in: strings.Repeat("a", 25) + "-b", uid: uid, want: strings.Repeat("a", 25) + "-" + uid},
		{name: "nothing usable in name", in: "___", uid: uid, want: uid},
		{name: "hostile uid is hashed", in: "web", uid: "../../etc/passwd", want: "web-" + shortHash("../../etc/passwd")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ScopedName(tt.in, tt.uid)
			if got != tt.want {
				t.Errorf("ScopedName(%q, %q) = %q, want %q", tt.in, tt.uid, got, tt.want)
			}
			if msgs := validation.IsDNS1123Label(got); len(msgs) > 0 {
				t.Errorf("%q is not an RFC 1123 label: %v", got, msgs)
			}
			if !isScopedTo(got, tt.uid) || isScopedTo(got, "1"+tt.uid) {
				t.Errorf("isScopedTo(%q) does not tell uid %q from another", got, tt.uid)
			}
		})
	}
}

func TestRemoteNamespace(t *testing.T) {
	tests := []struct {
		name, prefix, ns string
		exclusions       []string
		want             string
	}{
		{name: "prefixed", prefix: "offloading", ns: "team-a", want: "offloading-team-a"},
		{name: "excluded", prefix: "offloading", ns: "kube-system", exclusions: []string{"kube-system"}, want: "kube-system"},
		{name: "no prefix: the local name", prefix: "", ns: "team-a", want: "team-a"},
		{name: "no prefix, exclusions moot", prefix: "", ns: "team-a", exclusions: []string{"kube-system"}, want: "team-a"},
		{name: "too long is cut and hashed", prefix: "offloading", ns: strings.Repeat("n", 63),
			want: "offloading-" + strings.Repeat("n", 63-len("offloading-")-11) + "-" + shortHash("offloading-"+strings.Repeat("n", 63))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RemoteNamespace(tt.prefix, tt.exclusions, tt.ns)
			if got != tt.want {
				t.Errorf("RemoteNamespace = %q, want %q", got, tt.want)
			}
			if msgs := validation.IsDNS1123Label(got); len(msgs) > 0 {
				t.Errorf("%q is not an RFC 1123 label: %v", got, msgs)
			}
		})
	}
}

// The Python plugin's names, worked out from its _scope_obj_name and _ensure_subdomain_compliance.
func TestPythonScopedName(t *testing.T) {
	uid := "0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11"
	tests := []struct {
		name, in, uid, want string
		sameAsOurs          bool
	}{
		{name: "short: both plugins agree", in: "web", uid: uid, want: "web-" + uid, sameAsOurs: true},
		{name: "26 characters: still agree", in: strings.Repeat("a", 26), uid: uid, want: strings.Repeat("a", 26) + "-" + uid, sameAsOurs: true},
		{name: "long: the UID is cut, not the name", in: strings.Repeat("a", 40), uid: uid, want: strings.Repeat("a", 40) + "-0b6e3c5e-8f1a-4c1e-9a5"},
		{name: "a cut at a dash is trimmed", in: strings.Repeat("b", 53), uid: uid, want: strings.Repeat("b", 53) + "-0b6e3c5e"},
		{name: "63 and more: no UID left", in: strings.Repeat("c", 70), uid: uid, want: strings.Repeat("c", 63)},
		{name: "dots are kept", in: "kube-root-ca.crt", uid: uid, want: "kube-root-ca.crt-" + uid},
		{name: "case and other characters", in: "_My_App", uid: uid, want: "my-app-" + uid, sameAsOurs: true},
		{name: "non-ASCII", in: "é", uid: "x", want: "x", sameAsOurs: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PythonScopedName(tt.in, tt.uid); got != tt.want {
				t.Errorf("PythonScopedName(%q, %q) = %q, want %q", tt.in, tt.uid, got, tt.want)
			}
			if same := ScopedName(tt.in, tt.uid) == tt.want; same != tt.sameAsOurs {
				t.Errorf("ScopedName equal: %v, want %v", same, tt.sameAsOurs)
			}
		})
	}
}

// FuzzScopedName checks that any name and UID give a valid label that keeps distinct UIDs distinct.
func FuzzScopedName(f *testing.F) {
	f.Add("web", "0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11")
	f.Add(strings.Repeat("A.", 100), "x")
	f.Add("", "")
	f.Add("-", "-")
	f.Add("ünïcödé", "UID WITH SPACES")
	f.Fuzz(func(t *testing.T, name, uid string) {
		got := ScopedName(name, uid)
		if msgs := validation.IsDNS1123Label(got); len(msgs) > 0 {
			t.Fatalf("ScopedName(%q, %q) = %q: %v", name, uid, got, msgs)
		}
		if other := ScopedName(name, uid+"x"); other == got {
			t.Fatalf("UIDs %q and %q share the name %q", uid, uid+"x", got)
		}
		ns := RemoteNamespace("offloading", nil, name)
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			t.Fatalf("RemoteNamespace(%q) = %q: %v", name, ns, msgs)
		}
	})
}
