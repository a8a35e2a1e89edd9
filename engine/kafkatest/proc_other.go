//go:build !linux

package kafkatest

import "os/exec"

// setDeathSignal has no Pdeathsig outside Linux: Close and Main are all that stop the JVMs.
func setDeathSignal(cmd *exec.Cmd) {}
