package wgdevice

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckKernelMode(t *testing.T) {
	for _, tc := range []struct {
		name, capEff string
		tun          bool
		missing      []string // substrings of the error; none: no error
	}{
		{"root in a pod with NET_ADMIN", "00000000a80435fb", true, nil},
		{"NET_ADMIN, no tun, MKNOD", "0000000008001000", false, nil},
		{"no capability", "0000000000000000", true, []string{"CAP_NET_ADMIN"}},
		{"no capability, no tun", "0000000000000000", false, []string{"CAP_NET_ADMIN", "/dev/net/tun"}},
		{"NET_ADMIN without tun or MKNOD", "0000000000001000", false, []string{"/dev/net/tun"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKernelMode(tc.capEff, tc.tun)
			if len(tc.missing) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrKernelModeUnavailable) {
				t.Fatalf("err %v, want ErrKernelModeUnavailable", err)
			}
			for _, m := range tc.missing {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not name %s", err, m)
				}
			}
			if !strings.Contains(err.Error(), "netstack") {
				t.Errorf("%q does not name the alternative", err)
			}
		})
	}
}
