package engine_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/segment"
)

const crashChildEnv = "ENGINE_CRASH_CHILD_DIR"

// crashOptions are shared by the appending child and the checking parent: small segments so that
// kills land during rolls too.
func crashOptions(dir string) engine.Options {
	return engine.Options{Dir: dir, Partitions: 3, SegmentBytes: 16 << 10, IndexIntervalBytes: 512}
}

// TestCrashChild is the child of TestCrashRecovery: it appends from four goroutines until it is
// killed, printing "partition offset value" for every record whose Append returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		return // run only as TestCrashRecovery's child
	}
	run := os.Getenv("ENGINE_CRASH_RUN")
	l, err := engine.Open(crashOptions(dir))
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				var recs []engine.Record
				for k := 0; k < 1+seq%5; k++ {
					recs = append(recs, engine.Record{
						Key:   []byte(strconv.Itoa(seq*7 + k + g)),
						Value: []byte(fmt.Sprintf("run%s-g%d-s%d-k%d-%s", run, g, seq, k, strings.Repeat("x", seq%300))),
					})
				}
				got, err := l.Append(context.Background(), recs)
				if err != nil {
					fmt.Println("append failed:", err)
					os.Exit(3)
				}
				mu.Lock()
				for i, a := range got {
					fmt.Fprintf(out, "%d %d %s\n", a.Partition, a.Offset, recs[i].Value)
				}
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashRecovery kills an appending process with SIGKILL at random moments, many times over.
// After each kill the log reopens, recovers, passes Check, and holds every record whose Append
// had returned, readable and intact.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		return
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(11, 11))
	acked := map[[2]int64]string{}
	const kills = 12
	for run := 0; run < kills; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("ENGINE_CRASH_RUN=%d", run))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of acknowledged records: the child is mid-append then,
		// whether writing, syncing or rolling.
		killAfter := 50 + rng.IntN(400)
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			var p, off int64
			var val string
			if _, err := fmt.Sscanf(sc.Text(), "%d %d %s", &p, &off, &val); err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			if prev, ok := acked[[2]int64{p, off}]; ok && prev != val {
				t.Fatalf("run %d: offset %d of partition %d acknowledged twice: %q then %q", run, off, p, prev, val)
			}
			acked[[2]int64{p, off}] = val
			if n++; n == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if n < killAfter {
			t.Fatalf("run %d: child stopped after %d records without being killed", run, n)
		}
		verifyAcked(t, dir, acked, run)
	}
}

func verifyAcked(t *testing.T, dir string, acked map[[2]int64]string, run int) {
	t.Helper()
	l, err := engine.Open(crashOptions(dir))
	if err != nil {
		t.Fatalf("after kill %d: reopen: %v", run, err)
	}
	defer l.Close()
	if err := l.Check(); err != nil {
		t.Fatalf("after kill %d: Check: %v", run, err)
	}
	found := map[[2]int64]string{}
	var rr segment.RecordReader
	for p := int32(0); p < 3; p++ {
		err := l.Scan(context.Background(), p, 0, func(b *segment.Batch) error {
			if err := rr.Reset(b); err != nil {
				return err
			}
			for rr.Next() {
				found[[2]int64{int64(p), rr.Record().Offset}] = string(rr.Record().Value)
			}
			return rr.Err()
		})
		if err != nil {
			t.Fatalf("after kill %d: scan: %v", run, err)
		}
	}
	for k, want := range acked {
		if got, ok := found[k]; !ok || got != want {
			t.Fatalf("after kill %d: acknowledged record at partition %d offset %d: read %q (present %t), want %q", run, k[0], k[1], got, ok, want)
		}
	}
}
