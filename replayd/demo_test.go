package main

import (
	"strings"
	"testing"
)

// The newcomer's first command: the demo must end with a checked, complete replay.
func TestDemo(t *testing.T) {
	stdout, stderr, code := run(t, "demo", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--events", "3000", "--exit")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"answered the CRC challenge", "replay_job_status: Complete", "every signature valid: true", "checked: exactly the", "curl -s -X POST"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, stdout)
		}
	}
}
