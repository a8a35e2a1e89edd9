package kafkatest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill cmd's process when the thread that started it exits:
// startProcess starts every child from one thread that lives as long as the test binary.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
