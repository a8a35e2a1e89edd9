package main

import (
	"fmt"
	"slices"
	"time"
)

// Result is one metric of one variant of one case of a benchmark, with one sample per run.
type Result struct {
	Bench   string // "replay", "scan", ...
	Case    string // e.g. "share=0.1%", "codec=snappy"; "" when the benchmark has one case
	Variant string // e.g. "index", "seed"
	Metric  string // e.g. "total time"
	Unit    string // e.g. "ms"
	// Higher is true when a larger value is better (rates); false for costs (times, bytes).
	Higher  bool
	Samples []float64
}

// Median, Min and Max summarise the samples.
func (r *Result) Median() float64 { return median(r.Samples) }
func (r *Result) Min() float64    { return slices.Min(r.Samples) }
func (r *Result) Max() float64    { return slices.Max(r.Samples) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Comparison says which variant is ours and which the baseline for a (case, metric); the report
// prints their ratio as "how many times better ours is": baseline ÷ ours for costs, ours ÷
// baseline for rates (the baseline's cost per unit ÷ ours). Above 1, ours wins.
type Comparison struct {
	Case, Metric    string
	Ours, Baseline  string
	Label           string // e.g. "seed ÷ index"
	IsCeilingFactor bool   // the baseline is a physical limit: the ratio is "share of the ceiling"
}

// Target is a goal the design brief sets, judged on the medians of this run.
type Target struct {
	Text     string // what the goal is
	Measured string // the numbers it was judged on
	Met      bool
}

// Report is what one benchmark returns.
type Report struct {
	Name     string // short name, used by --only
	Title    string
	Setup    string // the data and the method, in a few sentences (markdown)
	Results  []*Result
	Compare  []Comparison
	Targets  []Target
	Notes    []string
	Skipped  string // non-empty: why the benchmark did not run
	Elapsed  time.Duration
	plotted  []string // plot files, relative to BENCH.md
	failures []string
}

// add appends a sample to the result (bench case variant metric), creating it on first use.
func (rep *Report) add(cse, variant, metric, unit string, higher bool, v float64) {
	for _, r := range rep.Results {
		if r.Case == cse && r.Variant == variant && r.Metric == metric {
			r.Samples = append(r.Samples, v)
			return
		}
	}
	rep.Results = append(rep.Results, &Result{Bench: rep.Name, Case: cse, Variant: variant, Metric: metric, Unit: unit, Higher: higher, Samples: []float64{v}})
}

// get returns the result for (case, variant, metric), or nil.
func (rep *Report) get(cse, variant, metric string) *Result {
	for _, r := range rep.Results {
		if r.Case == cse && r.Variant == variant && r.Metric == metric {
			return r
		}
	}
	return nil
}

// med is the median of (case, variant, metric), NaN-free: 0 when missing.
func (rep *Report) med(cse, variant, metric string) float64 {
	if r := rep.get(cse, variant, metric); r != nil {
		return r.Median()
	}
	return 0
}

// ratio is the "times better" of ours over baseline for one metric, as Comparison defines it.
func (rep *Report) ratio(cse, metric, ours, baseline string) float64 {
	o, b := rep.get(cse, ours, metric), rep.get(cse, baseline, metric)
	if o == nil || b == nil || o.Median() == 0 || b.Median() == 0 {
		return 0
	}
	if o.Higher {
		return o.Median() / b.Median()
	}
	return b.Median() / o.Median()
}

// compare registers a comparison for every metric given.
func (rep *Report) compare(cse, ours, baseline string, metrics ...string) {
	for _, m := range metrics {
		rep.Compare = append(rep.Compare, Comparison{Case: cse, Metric: m, Ours: ours, Baseline: baseline})
	}
}

func (rep *Report) target(met bool, text, measured string, args ...any) {
	rep.Targets = append(rep.Targets, Target{Text: text, Measured: fmt.Sprintf(measured, args...), Met: met})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
