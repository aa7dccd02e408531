package shadowagent

import (
	"context"
	"fmt"
	"log/slog"

	"golang.zx2c4.com/wireguard/device"
)

// deviceLogger bridges wireguard-go's printf logger to slog: its verbose lines at debug level,
// formatted only when debug is enabled, and its errors at error level. wireguard-go names peers
// by an abbreviated public key and never logs private keys.
func deviceLogger(log *slog.Logger) *device.Logger {
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
