//go:build unix

package main

import "syscall"

// privateFiles makes everything the process creates from now on readable by its user only:
// directories 0700, files 0600, whatever umask it was started with (the data directory holds
// app secrets and tokens' hashes).
func privateFiles() { syscall.Umask(0o077) }
