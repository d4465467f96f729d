//go:build !linux

package bench

import "time"

// processCPUSplit is not measured off Linux; cpu-ns/op then reads 0.
func processCPUSplit() (user, sys time.Duration) { return 0, 0 }
