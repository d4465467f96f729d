//go:build !linux

package bench

import "time"

// quietFunctionLogs does nothing off Linux: functions/sender's logs then
// mix with benchmark output.
func quietFunctionLogs() {}

// processCPUSplit is not measured off Linux; cpu-ns/op then reads 0.
func processCPUSplit() (user, sys time.Duration) { return 0, 0 }
