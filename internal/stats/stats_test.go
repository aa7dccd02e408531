package stats

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // 100 ms down to 1 ms: unsorted
	}
	tests := []struct {
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{[]time.Duration{7}, 0.99, 7},
		{[]time.Duration{3, 1, 2}, 0.5, 2},
		{[]time.Duration{4, 3, 2, 1}, 0.5, 2}, // nearest rank: ceil(0.5×4) = the 2nd
		{hundred, 0.5, 50 * time.Millisecond},
		{hundred, 0.95, 95 * time.Millisecond},
		{hundred, 0.99, 99 * time.Millisecond},
		{hundred, 1, 100 * time.Millisecond},
		{hundred, 0.001, time.Millisecond},
	}
	for _, tt := range tests {
		if got := Quantile(tt.ds, tt.q); got != tt.want {
			t.Errorf("Quantile(%d values, %v) = %v, want %v", len(tt.ds), tt.q, got, tt.want)
		}
	}
	if hundred[0] != 100*time.Millisecond {
		t.Errorf("Quantile sorted its argument in place")
	}
}
