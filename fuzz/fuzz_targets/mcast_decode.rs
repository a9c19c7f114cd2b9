//! Arbitrary datagrams into the multicast codec, a `Receiver` and a `Sender`: nothing may
//! panic, nothing may be buffered beyond the configured window and message size, and the
//! receiver's accounting (delivered + lost == messages since the join) must stay exact.
//!
//! Run from the crate root (new inputs go to the first, gitignored, directory; the
//! committed seeds stay untouched):
//!
//! ```text
//! mkdir -p fuzz/corpus/mcast_decode
//! cargo +nightly fuzz run mcast_decode fuzz/corpus/mcast_decode fuzz/seeds/mcast_decode
//! ```
//!
//! Input layout: see `check` in fuzz/mcast_decode_check.rs (a mode byte, then one
//! datagram or length-prefixed datagrams).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../mcast_decode_check.rs");

fuzz_target!(|data: &[u8]| check(data));
