// The checks of the `statsd_line` fuzz target, shared (through `include!`) with the
// stable-toolchain smoke run in tests/fuzz_smoke.rs.

/// The whole check for one input (NUL bytes separate the lines fed to the aggregator);
/// panics on any violation.
pub fn check(data: &[u8]) {
    volley::statsd::fuzzing::check_line_input(data);
}
