package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/index/indextest"
)

// makeIndexData writes a small embedded log into data/log.
func makeIndexData(t *testing.T, data string, seed uint64) {
	t.Helper()
	l, err := engine.Open(engine.Options{Dir: filepath.Join(data, "log"), Partitions: 3, SegmentBytes: 128 << 10, MaxBatchBytes: 16 << 10, Retention: -1, Sync: engine.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = indextest.Generate(t.Context(), l, indextest.Spec{
		Events: 3000, Webhooks: 200, DupRate: 0.05, Start: time.Now().Add(-3 * time.Hour), Span: 2 * time.Hour,
		Jitter: 2 * time.Minute, ValueSize: 500, ControlEvery: 10, Seed: seed,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, args...)
	if code != 0 {
		t.Fatalf("replayd %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestIndexCommands(t *testing.T) {
	data := t.TempDir()
	makeIndexData(t, data, 1)

	out := mustRun(t, "index", "rebuild", "--data", data)
	if !strings.Contains(out, "records/s") || !strings.Contains(out, "live index is now") {
		t.Fatalf("rebuild summary:\n%s", out)
	}
	live1, named, err := index.LiveDir(data)
	if err != nil || !named {
		t.Fatalf("no INDEX pointer after rebuild: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, index.RebuildDir)); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", index.RebuildDir, err)
	}
	out = mustRun(t, "index", "verify", "--data", data)
	if !strings.Contains(out, " 0 mismatches") {
		t.Fatalf("verify:\n%s", out)
	}
	out = mustRun(t, "index", "stats", "--data", data)
	for _, want := range []string{"entries holding", "partition", "checkpoint", "lag"} {
		if !strings.Contains(out, want) {
			t.Fatalf("stats lacks %q:\n%s", want, out)
		}
	}
	// The same log read in place as a broker's directory gives the same answers.
	mustRun(t, "index", "verify", "--data", data, "--source", "segments="+filepath.Join(data, "log"))
	mustRun(t, "index", "verify", "--data", data, "--source", "segments", "--segments-dir", filepath.Join(data, "log"), "--only-partitions", "0,2")

	// A partial rebuild reads only its partitions and carries the others over.
	out = mustRun(t, "index", "rebuild", "--data", data, "--only-partitions", "1")
	if !strings.Contains(out, "copied") {
		t.Fatalf("partial rebuild:\n%s", out)
	}
	live2, _, _ := index.LiveDir(data)
	if live2 == live1 {
		t.Fatal("the pointer still names the old index")
	}
	if _, err := os.Stat(live1); !os.IsNotExist(err) {
		t.Fatalf("old index %s not removed: %v", live1, err)
	}
	mustRun(t, "index", "verify", "--data", data)

	// Resume: an interrupted rebuild left index.rebuild with some partitions done.
	src, err := engine.OpenDir(engine.DirOptions{Dir: filepath.Join(data, "log")})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := index.Open(index.Options{Dir: filepath.Join(data, index.RebuildDir)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Build(t.Context(), src, index.BuildOptions{Partitions: []int32{0}}); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	src.Close()
	out, errOut, code := run(t, "index", "rebuild", "--data", data)
	if code != 0 || !strings.Contains(errOut, "resuming") {
		t.Fatalf("resumed rebuild: exit %d\n%s\n%s", code, out, errOut)
	}
	mustRun(t, "index", "verify", "--data", data)

	// An index checked against another log reports mismatches and exits 1.
	other := t.TempDir()
	makeIndexData(t, other, 2)
	out, _, code = run(t, "index", "verify", "--data", data, "--source", "segments="+filepath.Join(other, "log"), "--limit", "3")
	if code != 1 || !strings.Contains(out, "missing") && !strings.Contains(out, "dangling") && !strings.Contains(out, "extra") || !strings.Contains(out, "more") {
		t.Fatalf("verify against another log: exit %d\n%s", code, out)
	}
}

func TestIndexCommandErrors(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"index", "rebuild", "--data", data}, "no embedded log"},
		{[]string{"index", "rebuild", "--data", data, "--source", "segments"}, "needs a directory"},
		{[]string{"index", "rebuild", "--data", data, "--source", "kafka"}, "needs brokers"},
		{[]string{"index", "rebuild", "--data", data, "--source", "nfs"}, "want embedded"},
		{[]string{"index", "rebuild", "--data", data, "--only-partitions", "3-1"}, "range"},
		{[]string{"index", "verify", "--data", data}, "no index"},
	} {
		_, errOut, code := run(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("replayd %s: exit %d, stderr %q; want it to say %q", strings.Join(c.args, " "), code, errOut, c.want)
		}
	}
	makeIndexData(t, data, 3)
	if _, errOut, code := run(t, "index", "rebuild", "--data", data, "--only-partitions", "0,7"); code == 0 || !strings.Contains(errOut, "no partition 7") {
		t.Errorf("partition out of range: %d %q", code, errOut)
	}
	got, err := parsePartitions("5, 0,3-4,3")
	if err != nil || !slices.Equal(got, []int32{0, 3, 4, 5}) {
		t.Errorf("parsePartitions: %v %v", got, err)
	}
}
