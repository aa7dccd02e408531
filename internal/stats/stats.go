// Package stats holds the one definition of a percentile the project's benchmarks, tests and
// netprobe report.
package stats

import (
	"math"
	"slices"
	"time"
)

// Quantile is the q-quantile (0 < q ≤ 1) of ds by nearest rank: the smallest value that at least
// a fraction q of ds do not exceed; 0 when ds is empty. ds is left as it is.
func Quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return QuantileSorted(s, q)
}

// QuantileSorted is Quantile of ds already sorted in increasing order.
func QuantileSorted(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// QuantileCensored is the q-quantile by nearest rank of n values of which only ds were observed,
// the other n-len(ds) known only to be larger than any of ds (a round cut short at a deadline:
// the pods not ready by then). ok is false when the rank falls among the unobserved: the quantile
// is then larger than every observed value, and the returned value is the largest of ds.
func QuantileCensored(ds []time.Duration, n int, q float64) (d time.Duration, ok bool) {
	if len(ds) == 0 {
		return 0, n == 0
	}
	n = max(n, len(ds))
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := max(int(math.Ceil(q*float64(n))), 1)
	if rank > len(s) {
		return s[len(s)-1], false
	}
	return s[rank-1], true
}
