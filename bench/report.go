package main

import (
	"bufio"
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// machine describes where the suite ran.
func machine() [][2]string {
	var rows [][2]string
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	rows = append(rows, [2]string{"CPU", cpu})
	rows = append(rows, [2]string{"cores", fmt.Sprintf("%d logical (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0))})
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
				}
			}
		}
	}
	rows = append(rows, [2]string{"memory", mem})
	rows = append(rows, [2]string{"Go", runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH})
	osName := runtime.GOOS
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				osName = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		osName += ", kernel " + strings.TrimSpace(string(b))
	}
	rows = append(rows, [2]string{"OS", osName})
	db := "not reachable"
	if out, err := exec.Command("mysql", "--protocol=tcp", "-h127.0.0.1", "-uroot", "-N", "-e", "SELECT VERSION()").Output(); err == nil {
		db = strings.TrimSpace(string(out))
	}
	rows = append(rows, [2]string{"MariaDB (lease)", db})
	rows = append(rows, [2]string{"date", time.Now().UTC().Format("2006-01-02 15:04 MST")})
	return rows
}

// num formats v with about three significant digits.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1e6:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func times(x float64) string {
	if x == 0 {
		return "–"
	}
	return num(x) + "×"
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// writeReport writes BENCH.md.
func writeReport(c *Config, reports []*Report, elapsed time.Duration) error {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmarks\n\n")
	w("The seven benchmarks of the design brief (`../shared/design.md`, \"Benchmarks that decide whether the design works\"), ")
	w("each run side by side with its baseline on the same data in one run, %d samples per variant; ", c.Runs)
	w("medians with [min, max]. The machine is shared and noisy, so compare the ratios, not the absolute numbers. ")
	w("Written by `bench/` (see ARCHITECTURE.md, \"bench\").\n\n")
	w("    %s\n\n", c.Command)
	size := "full"
	if c.Quick {
		size = "quick (small data: not the numbers to judge the design by)"
	}
	w("Sizes: %s. Total time %v.\n\n", size, elapsed.Round(time.Second))
	w("| machine | |\n|---|---|\n")
	for _, r := range machine() {
		w("| %s | %s |\n", r[0], r[1])
	}
	w("\n## Summary\n\n")
	w("Targets from the brief (recorded, not tuned to):\n\n| target | measured (medians) | met |\n|---|---|---|\n")
	for _, rep := range reports {
		for _, t := range rep.Targets {
			met := "**no**"
			if t.Met {
				met = "yes"
			}
			w("| %s | %s | %s |\n", t.Text, t.Measured, met)
		}
		if rep.Skipped != "" && len(rep.Targets) == 0 {
			w("| %s | skipped: %s | – |\n", rep.Title, rep.Skipped)
		}
		for _, f := range rep.failures {
			w("| %s | **failed**: %s | – |\n", rep.Title, f)
		}
	}
	w("\nRatios, ours vs the baseline (medians). \"× better\" is the baseline's cost ÷ ours (for rates: our rate ÷ the baseline's), ")
	w("so above 1× ours wins; against a physical limit (the floor or ceiling) it is the fraction of that limit reached.\n\n")
	w("| benchmark | case | metric | ours | baseline | ours (median) | baseline (median) | × better |\n|---|---|---|---|---|---|---|---|\n")
	for _, rep := range reports {
		for _, cmp := range rep.Compare {
			o, bl := rep.get(cmp.Case, cmp.Ours, cmp.Metric), rep.get(cmp.Case, cmp.Baseline, cmp.Metric)
			if o == nil || bl == nil {
				continue
			}
			w("| %s | %s | %s | %s | %s | %s %s | %s %s | %s |\n", rep.Name, orDash(cmp.Case), cmp.Metric, cmp.Ours, cmp.Baseline,
				num(o.Median()), o.Unit, num(bl.Median()), bl.Unit, times(rep.ratio(cmp.Case, cmp.Metric, cmp.Ours, cmp.Baseline)))
		}
	}
	for _, rep := range reports {
		w("\n## %s\n\n", rep.Title)
		if rep.Setup != "" {
			w("%s\n\n", rep.Setup)
		}
		if rep.Skipped != "" {
			w("**Skipped in part or whole:** %s\n\n", rep.Skipped)
		}
		for _, f := range rep.failures {
			w("**Failed:** %s\n\n", f)
		}
		if len(rep.Results) > 0 {
			w("| case | variant | metric | median | min | max | samples |\n|---|---|---|---|---|---|---|\n")
			for _, r := range rep.Results {
				if r.Metric == "MB read" {
					continue
				}
				unit := ""
				if r.Unit != "" && r.Unit != r.Metric {
					unit = " " + r.Unit
				}
				w("| %s | %s | %s | %s%s | %s | %s | %d |\n", orDash(r.Case), r.Variant, r.Metric, num(r.Median()), unit, num(r.Min()), num(r.Max()), len(r.Samples))
			}
			w("\n")
		}
		for _, p := range rep.plotted {
			w("![%s](%s)\n\n", filepath.Base(p), p)
		}
		for _, n := range rep.Notes {
			w("%s\n\n", n)
		}
		w("_Took %v._\n", rep.Elapsed.Round(time.Millisecond))
	}
	if err := os.MkdirAll(filepath.Dir(c.BenchMD), 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.BenchMD, []byte(b.String()), 0o644)
}

// plotReplay draws replay time, time to first event and bytes read per delivered event against the
// webhook's share of its partition, index vs seed, on log-log axes.
func plotReplay(c *Config, rep *Report, d *indexData) error {
	for _, pl := range []struct {
		file, title, metric, ylabel string
	}{
		{"replay-time.svg", "Replay time vs the webhook's share of its partition", "total time", "total time (ms, median)"},
		{"replay-first-event.svg", "Time to first event vs share", "time to first event", "time to first event (ms, median)"},
		{"replay-bytes.svg", "Bytes read per delivered event vs share", "bytes read / delivered event", "bytes read per delivered event"},
	} {
		p := plot.New()
		p.Title.Text = pl.title
		p.X.Label.Text = "webhook's share of its partition (%)"
		p.Y.Label.Text = pl.ylabel
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		p.Add(plotter.NewGrid())
		for i, variant := range []string{"index", "seed"} {
			var xys plotter.XYs
			for _, h := range d.hot {
				v := rep.med("share="+h.label, variant, pl.metric)
				if v <= 0 || h.share <= 0 {
					continue
				}
				xys = append(xys, plotter.XY{X: 100 * h.share, Y: v})
			}
			if len(xys) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			line.Color = plotColors[i]
			points.Color = plotColors[i]
			points.Shape = plotShapes[i]
			p.Add(line, points)
			p.Legend.Add(variant, line, points)
		}
		p.Legend.Top = true
		path := filepath.Join(c.PlotDir, pl.file)
		if err := p.Save(6*vg.Inch, 4*vg.Inch, path); err != nil {
			return fmt.Errorf("plot %s: %w", pl.file, err)
		}
		rel, err := filepath.Rel(filepath.Dir(c.BenchMD), path)
		if err != nil {
			rel = path
		}
		rep.plotted = append(rep.plotted, filepath.ToSlash(rel))
	}
	return nil
}

var (
	plotColors = []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}}
	plotShapes = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}}
)
