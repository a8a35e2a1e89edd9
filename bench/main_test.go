package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary play the children the benchmarks start (child.go) too.
func TestMain(m *testing.M) {
	runChildIfAsked()
	os.Exit(m.Run())
}
