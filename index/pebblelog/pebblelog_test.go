package pebblelog_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/replay/replay/index/pebblelog"
)

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := pebblelog.New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "embeddedjob")
	l.Infof("flushed %d tables", 3)
	l.Errorf("background error: %s", "compaction failed")
	if l.Err() != nil {
		t.Fatalf("Err before any fatal error: %v", l.Err())
	}
	run := func(f string) (err error) {
		defer pebblelog.Recover(&err)
		l.Fatalf("%s", f)
		return nil
	}
	err := run("MANIFEST sync failed")
	var fe *pebblelog.FatalError
	if !errors.As(err, &fe) || fe.DB != "embeddedjob" || fe.Msg != "MANIFEST sync failed" {
		t.Fatalf("recovered %v", err)
	}
	run("a second one")
	if !errors.Is(l.Err(), err) {
		t.Fatalf("Err = %v, want the first fatal error %v", l.Err(), err)
	}
	out := buf.String()
	for _, want := range []string{"level=DEBUG", "flushed 3 tables", "level=ERROR", "compaction failed", "MANIFEST sync failed", "db=embeddedjob"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
	// Other panics are not Pebble's fatal errors: they go on.
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the other panic", r)
		}
	}()
	func() (err error) {
		defer pebblelog.Recover(&err)
		panic("boom")
	}()
}
