package wgdevice

import (
	"context"
	"fmt"
	"log/slog"

	"golang.zx2c4.com/wireguard/device"
)

// NewLogger bridges wireguard-go's printf logger to slog: verbose lines at debug level
// (formatted only when debug is enabled), errors at error level, all with
// component=wireguard. wireguard-go names peers by an abbreviated public key and never logs
// private keys. A nil log discards everything.
func NewLogger(log *slog.Logger) *device.Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "wireguard")
	l := &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   func(format string, args ...any) { log.Error(fmt.Sprintf(format, args...)) },
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		l.Verbosef = func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) }
	}
	return l
}
