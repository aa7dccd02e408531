package plugin

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// iniValues flattens a parsed file to section.key → interpolated value (or "error: …").
func iniValues(f *iniFile) map[string]string {
	out := map[string]string{}
	for _, s := range append([]*iniSection{f.defaults}, f.sections...) {
		for _, k := range s.order {
			name := s.name
			if s == f.defaults {
				name = iniDefaultSection
			}
			v, _, err := f.get(name, k)
			if s == f.defaults {
				v, err = f.defaults.keys[k].raw(), nil
			}
			if err != nil {
				v = "error: " + err.Error()
			}
			out[name+"."+k] = v
		}
	}
	return out
}

var iniTests = []struct {
	name string
	in   string
	want map[string]string
	err  string // part of the parse error, "" for none
}{
	{name: "sections, both delimiters, spaces", in: "[app]\nname = x\nSocket_Port: 4000\n\n[k8s]\nkubeconfig_path=private/k8s/kubeconfig.yaml\n",
		want: map[string]string{"app.name": "x", "app.socket_port": "4000", "k8s.kubeconfig_path": "private/k8s/kubeconfig.yaml"}},
	{name: "comments and inline text", in: "# top\n[app]\n; semi\n  # indented comment\nname=a # not a comment\n",
		want: map[string]string{"app.name": "a # not a comment"}},
	{name: "first delimiter ends the key, JSON values", in: "[k8s]\nclient_configuration={\"verify_ssl\": false, \"a\": \"b=c\"}\n",
		want: map[string]string{"k8s.client_configuration": `{"verify_ssl": false, "a": "b=c"}`}},
	{name: "continuation lines", in: "[k8s]\nkubeconfig = {\"a\":\n   1,\n\n   \"b\": 2}\nnext=x\n",
		want: map[string]string{"k8s.kubeconfig": "{\"a\":\n1,\n\n\"b\": 2}", "k8s.next": "x"}},
	{name: "a comment inside a continued value", in: "[s]\nk = a\n  # c\n  b\n",
		want: map[string]string{"s.k": "a\nb"}},
	{name: "trailing blank lines trimmed", in: "[s]\nk = a\n\n\n[t]\nj=\n",
		want: map[string]string{"s.k": "a", "t.j": ""}},
	{name: "DEFAULT and interpolation", in: "[DEFAULT]\nroot=/data\n[k8s]\nkubeconfig_path=%(root)s/kube.yaml\npct=100%%\n",
		want: map[string]string{"DEFAULT.root": "/data", "k8s.kubeconfig_path": "/data/kube.yaml", "k8s.pct": "100%"}},
	{name: "nested references", in: "[s]\na=%(b)s!\nb=%(c)s%(c)s\nc=x\n",
		want: map[string]string{"s.a": "xx!", "s.b": "xx", "s.c": "x"}},
	{name: "a lone percent fails on read", in: "[s]\na=50%\n",
		want: map[string]string{"s.a": "error: line 2: '%' must be followed by '%' or '(' (a literal % is written %%), found \"%\""}},
	{name: "a missing reference fails on read", in: "[s]\na=%(nope)s\n",
		want: map[string]string{"s.a": "error: line 2: %(nope)s names no key of [s] or [DEFAULT]"}},
	{name: "a reference loop fails on read", in: "[s]\na=%(a)s\n",
		want: map[string]string{"s.a": "error: line 2: references nested deeper than 10 (a loop?)"}},
	{name: "CRLF and BOM", in: "\ufeff[app]\r\nname=x\r\n", want: map[string]string{"app.name": "x"}},
	{name: "header up to the last bracket", in: "[a]b] trailing\nk=v\n", want: map[string]string{"a]b.k": "v"}},
	{name: "a key before any section", in: "k=v\n[s]\n", err: "line 1: a key before the first [section]"},
	{name: "a line without delimiter", in: "[s]\njust words\n", err: "line 2:"},
	{name: "empty key", in: "[s]\n=v\n", err: "line 2:"},
	{name: "duplicate section", in: "[s]\n[t]\n[s]\n", err: "line 3: section [s] appears twice"},
	{name: "duplicate key, any case", in: "[s]\nKey=1\nkey=2\n", err: "line 3: key \"key\" appears twice in [s]"},
	{name: "not UTF-8", in: "[s]\nk=\xff\n", err: "not UTF-8"},
}

func TestParseINI(t *testing.T) {
	for _, tt := range iniTests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseINI([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, iniValues(f)); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseINIAbsentSectionHasNoDefaults(t *testing.T) {
	f, err := parseINI([]byte("[DEFAULT]\nlevel=DEBUG\n[app]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := f.get("app", "level"); !ok || v != "DEBUG" {
		t.Errorf("[app] inherits [DEFAULT]: got %q %v", v, ok)
	}
	if _, ok, _ := f.get("log", "level"); ok {
		t.Error("an absent section must give nothing, as configparser's fallback does")
	}
}

func FuzzParseINI(f *testing.F) {
	for _, tt := range iniTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ini, err := parseINI(data)
		if err != nil {
			var serr *iniSyntaxError
			if !errors.As(err, &serr) && !strings.Contains(err.Error(), "UTF-8") {
				t.Fatalf("error of an unexpected kind: %v", err)
			}
			return
		}
		for _, s := range ini.sections {
			if len(s.order) != len(s.keys) {
				t.Fatalf("section %s: %d keys in order, %d in the map", s.name, len(s.order), len(s.keys))
			}
			for _, k := range s.order {
				if k != strings.ToLower(k) || k == "" || strings.ContainsAny(k, "=:\n") {
					t.Fatalf("bad key %q", k)
				}
				v, ok, _ := ini.get(s.name, k)
				if !ok || strings.HasSuffix(v, "\n") && !strings.Contains(s.keys[k].raw(), "%") {
					t.Fatalf("value of %s.%s: %q %v", s.name, k, v, ok)
				}
			}
		}
		// Whatever parses also loads without a panic.
		var c FileConfig
		_ = c.readINI(data)
	})
}
