package procstat

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestOwnProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	// Burn a little CPU so that at least one clock tick is charged.
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	if got := CPUSeconds(os.Getpid()); got <= 0 {
		t.Errorf("CPUSeconds(self) = %v; want > 0", got)
	}
	if got := PeakRSSKB(os.Getpid()); got <= 1024 {
		t.Errorf("PeakRSSKB(self) = %d KiB; a Go test binary holds more than 1 MiB", got)
	}
}

func TestGoneProcess(t *testing.T) {
	t.Parallel()
	// Beyond Linux's largest pid (4194304), so nothing is there.
	if cpu, rss := CPUSeconds(1<<23), PeakRSSKB(1<<23); cpu != 0 || rss != 0 {
		t.Errorf("a missing process reads CPU %v, RSS %d; want 0 and 0", cpu, rss)
	}
}
