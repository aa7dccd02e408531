package wgdevice

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	var out strings.Builder
	l := NewLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Verbosef("peer(%s) - handshake", "AbCd…WxYz")
	l.Errorf("failed: %v", errors.New("boom"))
	if s := out.String(); !strings.Contains(s, "level=DEBUG msg=\"peer(AbCd…WxYz) - handshake\" component=wireguard") ||
		!strings.Contains(s, "level=ERROR msg=\"failed: boom\" component=wireguard") {
		t.Errorf("bridged log:\n%s", s)
	}
	var info strings.Builder
	NewLogger(slog.New(slog.NewTextHandler(&info, nil))).Verbosef("hidden")
	if info.Len() != 0 {
		t.Errorf("verbose line logged at info level: %s", info.String())
	}
	NewLogger(nil).Errorf("discarded") // nil discards, and must not panic
}
