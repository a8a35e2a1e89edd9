package index

import (
	"errors"
	"slices"
	"testing"
)

// FuzzDecodeRuns: entry values are read from disk, so any bytes must decode to ascending runs or
// a corruption error, never a panic; and what decodes must round-trip through appendRun.
func FuzzDecodeRuns(f *testing.F) {
	f.Add(appendRun(nil, []int64{0, 5, 9}))
	f.Add(appendRun(appendRun(nil, []int64{1, 2}), []int64{40, 41, 1 << 40}))
	f.Add([]byte{0})
	f.Add([]byte{3, 1})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		offs, err := decodeRuns(nil, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRuns error %v is not ErrCorrupt", err)
			}
			return
		}
		// Each run ascends strictly; re-encoding every run gives offsets that decode the same.
		var again []int64
		for len(offs) > 0 {
			n := 1
			for n < len(offs) && offs[n] > offs[n-1] {
				n++
			}
			again, err = decodeRuns(again, appendRun(nil, offs[:n]))
			if err != nil {
				t.Fatalf("re-encoded run %v: %v", offs[:n], err)
			}
			offs = offs[n:]
		}
		if want, _ := decodeRuns(nil, v); !slices.Equal(again, want) {
			t.Fatalf("round trip %v != %v", again, want)
		}
	})
}
