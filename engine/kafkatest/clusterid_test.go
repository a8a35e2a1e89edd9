package kafkatest

import "testing"

// TestClusterIDNeverStartsWithADash: StorageTool reads "--cluster-id -…" as another option, so a
// cluster id must not start with '-' (one in 64 random ones would).
func TestClusterIDNeverStartsWithADash(t *testing.T) {
	for range 5000 {
		if id := newClusterID(); len(id) != 22 || id[0] == '-' {
			t.Fatalf("cluster id %q", id)
		}
	}
}
