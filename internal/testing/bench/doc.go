// Package bench holds gmail-relay's in-process measurements, as Go
// benchmarks and tests only: the relay's CPU per send against the sandbox,
// directly and through the sender function's push handler; a naive
// baseline sender; external calls per message counted by the instrumented
// fakes; and the reliability suite (faults, duplicates, quota, a revoked
// grant), which asserts outcomes.
//
// Benchmarks put everything that plays Google (sandbox, Secret Manager fake,
// pstest) in a helper process, so that the CPU a benchmark reports is the
// relay's own; the helper's CPU is reported beside it. What a deployment
// feels as a process (throughput at a realistic Gmail latency, peak memory,
// cold start) is measured by scripts/loadtest. scripts/bench.sh runs both
// and prints one table; nothing here makes a timed assertion, and every
// heavy test skips under -short.
package bench
