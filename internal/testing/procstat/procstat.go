// Package procstat reads a process's CPU time and peak memory from Linux's
// /proc, for the benchmarks and the load harness, which measure processes
// of their own (the fake Google, the packaged sender). Elsewhere, or for a
// process that is gone, every figure reads 0.
package procstat

import (
	"os"
	"strconv"
	"strings"
)

// CPUSeconds is pid's user plus system CPU time so far.
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name is parenthesised and may hold spaces, so fields are
	// counted after its closing parenthesis: utime and stime, the 14th and
	// 15th fields of the line, are the 12th and 13th from there.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks; USER_HZ is 100 on Linux
}

// PeakRSSKB is pid's peak resident set size (VmHWM), in KiB.
func PeakRSSKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}
