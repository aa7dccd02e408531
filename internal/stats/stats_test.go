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

func TestQuantileCensored(t *testing.T) {
	seen := []time.Duration{30, 10, 20} // 3 of 10 observed
	tests := []struct {
		ds     []time.Duration
		n      int
		q      float64
		want   time.Duration
		wantOK bool
	}{
		{seen, 10, 0.1, 10, true},
		{seen, 10, 0.3, 30, true},
		{seen, 10, 0.31, 30, false}, // the 4th of 10: not observed, larger than 30
		{seen, 10, 0.95, 30, false},
		{seen, 3, 0.95, 30, true}, // all observed: Quantile
		{seen, 2, 0.5, 20, true},  // n below len(ds) counts ds
		{nil, 5, 0.5, 0, false},
		{nil, 0, 0.5, 0, true},
	}
	for _, tt := range tests {
		got, ok := QuantileCensored(tt.ds, tt.n, tt.q)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("QuantileCensored(%v, %d, %v) = %v, %v; want %v, %v", tt.ds, tt.n, tt.q, got, ok, tt.want, tt.wantOK)
		}
	}
	if seen[0] != 30 {
		t.Errorf("QuantileCensored sorted its argument in place")
	}
}
