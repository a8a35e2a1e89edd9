package server_test

import (
	"strings"
	"testing"

	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/worker"
)

// TestConfigInitialWindow: the initial window defaults to the worker's and is refused below one.
func TestConfigInitialWindow(t *testing.T) {
	c := server.Config{}
	c.EnsureDefaults()
	if c.InitialWindow != worker.DefaultInitialWindow {
		t.Fatalf("default InitialWindow %d, want %d", c.InitialWindow, worker.DefaultInitialWindow)
	}
	c.InitialWindow = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "InitialWindow") {
		t.Fatalf("InitialWindow -1: %v", err)
	}
}
