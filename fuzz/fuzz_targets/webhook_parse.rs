//! Arbitrary bytes into every webhook parser: dead-letter JSON lines, `whsec_` secrets,
//! retry schedules and `webhook-signature` headers. Nothing may panic; what parses must
//! round-trip.
//!
//! Run from the crate root (new inputs go to the first, gitignored, directory):
//!
//! ```text
//! mkdir -p fuzz/corpus/webhook_parse
//! cargo +nightly fuzz run webhook_parse fuzz/corpus/webhook_parse fuzz/seeds/webhook_parse
//! ```
//!
//! Input layout: the first byte selects the parser (mod 4: dead letters, secret,
//! schedule, signature header as `timestamp\nheader`), the rest is its input.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../webhook_parse_check.rs");

fuzz_target!(|data: &[u8]| check(data));
