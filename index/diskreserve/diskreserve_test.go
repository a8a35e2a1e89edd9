package diskreserve_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/index/diskreserve"
)

func TestCheck(t *testing.T) {
	fs := diskreserve.NewFreeFS(vfs.NewMem(), 100<<20)
	if err := diskreserve.Check(fs, "/db", 64<<20); err != nil {
		t.Fatalf("100 MiB free, reserve 64 MiB: %v", err)
	}
	fs.Free.Store(10 << 20)
	err := diskreserve.Check(fs, "/db", 64<<20)
	var le *diskreserve.Error
	if !errors.As(err, &le) || !errors.Is(err, diskreserve.ErrLowDisk) || le.Dir != "/db" || le.Avail != 10<<20 || le.Reserve != 64<<20 {
		t.Fatalf("10 MiB free, reserve 64 MiB: %#v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "/db") || !strings.Contains(msg, "10 MiB free") || !strings.Contains(msg, "64 MiB") {
		t.Fatalf("message %q does not say where, how much and the reserve", msg)
	}
	if err := diskreserve.Check(fs, "/db", 0); err != nil {
		t.Fatalf("no reserve: %v", err)
	}
	// The real filesystem: no disk has an exabyte free.
	if err := diskreserve.Check(vfs.Default, t.TempDir(), 1<<60); !errors.Is(err, diskreserve.ErrLowDisk) {
		t.Fatalf("reserve of 1 EiB on the real disk: %v", err)
	}
	if err := diskreserve.Check(vfs.Default, t.TempDir(), 1); err != nil {
		t.Fatalf("reserve of one byte on the real disk: %v", err)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "0": 0, "1000": 1000, "2 MB": 2_000_000} {
		got, err := diskreserve.Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
		if in != "0" && in != "1000" && in != "2 MB" {
			if back, err := diskreserve.Parse(diskreserve.Format(got)); err != nil || back != got {
				t.Errorf("Parse(Format(%d)) = %d, %v", got, back, err)
			}
		}
	}
	for _, bad := range []string{"", "lots", "-5MiB", "99999999999EiB"} {
		if _, err := diskreserve.Parse(bad); err == nil || !strings.Contains(err.Error(), "size") && !strings.Contains(err.Error(), "large") {
			t.Errorf("Parse(%q): %v, want an error naming it", bad, err)
		}
	}
}
