// Package packaging holds the test that proves, offline, that the archive
// scripts/package.sh uploads builds and serves every function the way Cloud
// Run functions' Go buildpack would: the archive's root package, a generated
// main in a separate module that requires it, and one process per
// FUNCTION_TARGET. The package has no code of its own.
package packaging
