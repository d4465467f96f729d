// Package bench holds gmail-relay's measurements, as Go benchmarks and
// tests only: the sender's CPU and allocations per message, in-process
// throughput of the CloudEvent handler, a naive baseline sender, external
// calls per message counted by the instrumented fakes, and the reliability
// suite (faults, duplicates, quota, a revoked grant) that asserts outcomes.
//
// Benchmarks put everything that plays Google (sandbox, Secret Manager fake,
// pstest, a no-op Gmail) in a helper process, so that the CPU a benchmark
// reports is the relay's own; the helper's CPU is reported beside it.
// scripts/bench.sh runs them all and prints one table; nothing here makes a
// timed assertion, and every heavy test skips under -short.
package bench
