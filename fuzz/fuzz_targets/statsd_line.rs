//! Arbitrary bytes into the StatsD line parser, the per-flavour checks and the
//! client-side aggregator: nothing may panic, and whatever the aggregator emits must
//! parse again and pack under the payload limit.
//!
//! Run from the crate root:
//!
//! ```text
//! mkdir -p fuzz/corpus/statsd_line
//! cargo +nightly fuzz run statsd_line fuzz/corpus/statsd_line fuzz/seeds/statsd_line
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../statsd_line_check.rs");

fuzz_target!(|data: &[u8]| check(data));
