package bench

import (
	"os"
	"syscall"
	"time"
)

// quietFunctionLogs keeps benchmark output readable: functions/sender logs
// one JSON line per message to the stdout it captured at init, as deployed.
// File descriptor 1 is pointed at /dev/null, so those lines are still
// formatted and written (their cost stays in the figures), while os.Stdout,
// which the testing package prints through, moves to a copy of the real
// stdout.
func quietFunctionLogs() {
	real, err := syscall.Dup(1)
	if err != nil {
		return
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	if err := syscall.Dup3(int(null.Fd()), 1, 0); err != nil {
		return
	}
	os.Stdout = os.NewFile(uintptr(real), "/dev/stdout")
}

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
