//go:build race

package sender_test

// raceBuild: the race detector's shadow memory inflates a process's RSS
// several times over, so absolute memory figures mean nothing in this build.
const raceBuild = true
