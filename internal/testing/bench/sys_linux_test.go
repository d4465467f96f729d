package bench

import (
	"syscall"
	"time"
)

// processCPUSplit is this process's user and system CPU time so far. The
// system part is mostly loopback TCP, where the sending process's write
// also pays for delivering the bytes into the receiver's socket.
func processCPUSplit() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
