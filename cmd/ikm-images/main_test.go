package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"help", []string{"--help"}, nil, flag.ErrHelp.Error()},
		{"no command", nil, nil, "a command is required"},
		{"build needs the time", []string{"build"}, nil, "SOURCE_DATE_EPOCH"},
		{"bad time", []string{"build", "--source-date-epoch", "yesterday"}, nil, "positive Unix time"},
		{"push needs a registry", []string{"push"}, nil, "REGISTRY"},
		{"unknown command", []string{"bake"}, nil, `unknown command "bake"`},
		{"stray argument", []string{"fetch", "extra"}, nil, "unexpected arguments"},
		{"spec missing", []string{"fetch", "--spec", "/nonexistent.yaml"}, nil, "read spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), tt.args, env(tt.env), &out, &out)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
			if errors.Is(err, flag.ErrHelp) {
				for _, want := range []string{"build", "fetch", "lock", "push", "IKM_CACHE", "SOURCE_DATE_EPOCH", "REGISTRY", "VERSION"} {
					if !strings.Contains(out.String(), want) {
						t.Errorf("--help lacks %q", want)
					}
				}
			}
		})
	}
}

// TestEnvironmentDefaults: the Makefile passes VERSION, REVISION and SOURCE_DATE_EPOCH in the
// environment; flags override them.
func TestEnvironmentDefaults(t *testing.T) {
	o, err := parseFlags([]string{"build", "--version", "v2"}, env(map[string]string{
		"VERSION": "v1", "REVISION": "abc", "SOURCE_DATE_EPOCH": "1700000000", "IKM_CACHE": "/c", "IMAGES": "pause,shell",
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.version != "v2" || o.revision != "abc" || o.epoch != 1_700_000_000 || o.cache != "/c" || o.only != "pause,shell" {
		t.Errorf("options = %+v", o)
	}
}
