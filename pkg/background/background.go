// Package background runs work that is meant to take only the CPU time
// the rest of cosa leaves idle.
package background

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Go runs f in a new goroutine on a thread of its own at the given nice
// value (0 to 19): the scheduler then gives the build's own steps the
// cores first, and f whatever they leave.
func Go(nice int, f func()) {
	go func() {
		runtime.LockOSThread()
		// Best effort: at the normal priority f is only less polite.
		unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
		f()
		// No UnlockOSThread: the thread, reniced, ends with the goroutine
		// instead of going back to the pool.
	}()
}
