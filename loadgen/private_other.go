//go:build !unix

package main

// privateFiles does nothing where there is no umask: the data directory's permissions are the
// operator's.
func privateFiles() {}
