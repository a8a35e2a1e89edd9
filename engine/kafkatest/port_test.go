package kafkatest

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestStartOnAPortAnotherClusterHolds starts a cluster whose broker port is the shared cluster's:
// the new node cannot bind it, and the broker that answers Metadata there is of another
// cluster. Start must not take that answer for its own cluster's (a test would then produce to
// and read from the other cluster while reading this one's empty log directory); it reports the
// bind failure, on which Start tries other ports.
func TestStartOnAPortAnotherClusterHolds(t *testing.T) {
	other := Shared(t, 1)
	_, p, err := net.SplitHostPort(other.Nodes[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	taken, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	ports[0] = taken
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := start(ctx, Options{Nodes: 1, Heap: "320m", StartTimeout: 90 * time.Second}, ports)
	if err == nil {
		c.Close()
		t.Fatalf("a cluster started with its broker on %s, which cluster %s holds", other.Nodes[0].Addr, other.ID)
	}
	if !errors.Is(err, errBind) {
		t.Fatalf("start on a taken port: %v; want an error marked errBind, so that Start tries other ports", err)
	}
}
