//go:build race

package segment

// raceEnabled: under the race detector sync.Pool drops a share of what is put in it on purpose,
// so libraries that pool their buffers (zstd) allocate where they otherwise would not.
const raceEnabled = true
