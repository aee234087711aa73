//go:build race

package userspace

// raceEnabled: the race detector makes sync.Pool drop items and
// instruments memory, so allocation counts mean nothing under it.
const raceEnabled = true
