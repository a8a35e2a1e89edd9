//go:build unix

package main

import "syscall"

// privateFiles makes everything the process creates from now on readable by its user only:
// directories 0700, files 0600, whatever umask it was started with, as replayd does: produce
// writes into replayd's data directory, which holds app secrets, and a sink's record holds what
// webhooks received.
func privateFiles() { syscall.Umask(0o077) }
