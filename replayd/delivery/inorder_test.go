package delivery

import (
	"math/rand/v2"
	"sync"
	"testing"
)

func TestInOrder(t *testing.T) {
	o := NewInOrder(100)
	if o.Checkpoint() != 100 {
		t.Fatalf("start checkpoint %d", o.Checkpoint())
	}
	for _, off := range []int64{100, 103, 104, 110} { // the webhook's events; others skipped
		if err := o.Begin(off); err != nil {
			t.Fatal(err)
		}
	}
	step := func(off, want int64) {
		t.Helper()
		got, err := o.Done(off)
		if err != nil || got != want {
			t.Fatalf("Done(%d) = %d, %v; want %d", off, got, err, want)
		}
	}
	step(104, 100) // 100 and 103 still out
	step(100, 103)
	step(110, 103)
	step(103, 111) // all settled: the read position
	if o.InFlight() != 0 {
		t.Errorf("in flight %d", o.InFlight())
	}
	o.Advance(150) // read past records of other webhooks
	if o.Checkpoint() != 150 {
		t.Errorf("after Advance checkpoint %d", o.Checkpoint())
	}
	o.Advance(120) // never backwards
	if o.Checkpoint() != 150 {
		t.Errorf("Advance moved back to %d", o.Checkpoint())
	}
	if err := o.Begin(149); err == nil {
		t.Error("Begin below the read position accepted")
	}
	if _, err := o.Done(110); err == nil {
		t.Error("Done twice accepted")
	}
	if _, err := o.Done(999); err == nil {
		t.Error("Done of an offset never begun accepted")
	}
	if err := o.Begin(160); err != nil {
		t.Fatal(err)
	}
	o.Advance(170)
	if o.Checkpoint() != 160 {
		t.Errorf("checkpoint %d with 160 in flight", o.Checkpoint())
	}
	step(160, 170)
}

// TestInOrderRandom checks the checkpoint against a direct computation for random completion
// orders, with workers completing concurrently.
func TestInOrderRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		n := 1 + r.IntN(400)
		start := int64(r.IntN(1000))
		o := NewInOrder(start)
		offs := make([]int64, n)
		next := start
		for i := range offs {
			next += int64(r.IntN(5)) // gaps: other webhooks' records
			offs[i] = next
			next++
			if err := o.Begin(offs[i]); err != nil {
				t.Fatal(err)
			}
		}
		order := r.Perm(n)
		done := make([]bool, n)
		for k, i := range order {
			got, err := o.Done(offs[i])
			if err != nil {
				t.Fatal(err)
			}
			done[i] = true
			want := next
			for j := range offs {
				if !done[j] {
					want = offs[j]
					break
				}
			}
			if got != want {
				t.Fatalf("round %d step %d: checkpoint %d, want %d", round, k, got, want)
			}
		}
	}

	// Concurrent completions end at the read position.
	o := NewInOrder(0)
	const n = 2000
	for i := range int64(n) {
		o.Begin(i * 2)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := int64(w); i < n; i += 4 {
				if _, err := o.Done(i * 2); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := o.Checkpoint(); got != 2*(n-1)+1 {
		t.Errorf("final checkpoint %d", got)
	}
}
