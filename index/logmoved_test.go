package index

import (
	"fmt"
	"testing"

	"github.com/replay/replay/engine"
)

// A streaming lookup that finds the log changed under it is worth retrying: a replay job is
// released and leased again (a new lookup), not failed.
func TestLogMovedIsRetryable(t *testing.T) {
	if err := fmt.Errorf("%w: offset 3 after 9", errLogMoved); !engine.IsRetryable(err) {
		t.Fatalf("%v is not retryable", err)
	}
}
