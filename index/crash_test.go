package index

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"testing"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
)

const crashChildEnv = "REPLAY_INDEX_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild builds the index of the log in dir, committing often and printing a line after
// every commit, until it is killed (or the log is indexed, after which it waits to be killed).
func crashChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	l, err := engine.Open(engine.Options{Dir: filepath.Join(dir, "log"), Retention: -1})
	if err != nil {
		fail(err)
	}
	ix, err := Open(Options{Dir: filepath.Join(dir, "index"), CommitRecords: 150})
	if err != nil {
		fail(err)
	}
	var mu sync.Mutex // partitions report from their own goroutines
	out := bufio.NewWriter(os.Stdout)
	err = ix.Build(context.Background(), l, BuildOptions{Parallelism: 2, Progress: func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "commit %d %d\n", p.Partition, p.Checkpoint)
		out.Flush()
	}})
	if err != nil {
		fail(err)
	}
	mu.Lock()
	fmt.Fprintln(out, "done")
	out.Flush()
	select {} // wait for the kill
}

// TestIndexCrash kills a building process at random moments, several times, and checks that the
// index it leaves, once building is finished, equals a rebuild from scratch, entry by entry.
func TestIndexCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 3, nil)
	spec := baseSpec()
	spec.Events = 15000
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	l.Close()

	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 3))
	kills := 0
	for round := 0; round < 6; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of commits: the child keeps committing while the kill is
		// on its way, so it lands anywhere in a commit cycle.
		after := 1 + rng.IntN(12)
		sc := bufio.NewScanner(stdout)
		commits, done := 0, false
		for sc.Scan() {
			if sc.Text() == "done" {
				done = true
				break
			}
			if commits++; commits >= after {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child ended by itself: %v", round, err)
		}
		kills++
		t.Logf("round %d: killed after %d commits (done=%v)", round, commits, done)
		if done {
			break
		}
	}

	l = openLog(t, filepath.Join(dir, "log"), 3, nil)
	defer l.Close()
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index")})
	if err := ix.Check(); err != nil {
		t.Fatalf("after %d kills: %v", kills, err)
	}
	build(t, ix, l)
	verifyClean(t, ix, l)
	fresh := openIndex(t, Options{Dir: filepath.Join(dir, "fresh")})
	build(t, fresh, l)
	got, want := entries(t, ix), entries(t, fresh)
	if len(got) != len(want) {
		t.Fatalf("recovered index has %d entries, a rebuild %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("entry %d: recovered %+v, rebuilt %+v", i, got[i], want[i])
		}
	}
	for p := int32(0); p < 3; p++ {
		a, _, _ := ix.Checkpoint(p)
		b, _, _ := fresh.Checkpoint(p)
		if a != b {
			t.Fatalf("partition %d: checkpoint %d, rebuilt %d", p, a, b)
		}
	}
	t.Logf("%d kills; %d entries equal to a rebuild's", kills, len(want))
}

func entries(t *testing.T, ix *Index) []Entry {
	var out []Entry
	if err := ix.Entries(-1, func(e Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}
