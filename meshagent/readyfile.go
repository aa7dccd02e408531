package meshagent

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// writeReadyFile writes the handshake time to path through a rename, so a probe never reads a
// half-written file.
func writeReadyFile(path string, handshake time.Time) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	_, err = fmt.Fprintf(f, "handshake %s\n", handshake.UTC().Format(time.RFC3339Nano))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write ready file: %w", err)
	}
	return nil
}
