//! Arbitrary bytes into the ZMTP codec and a ZMTP `Session`: nothing may panic, and
//! nothing may be buffered or allocated because the input merely declared a size.
//!
//! Run from the crate root (new inputs go to the first, gitignored, directory; the
//! committed seeds stay untouched):
//!
//! ```text
//! mkdir -p fuzz/corpus/zmtp_decode
//! cargo +nightly fuzz run zmtp_decode fuzz/corpus/zmtp_decode fuzz/seeds/zmtp_decode
//! ```
//!
//! Input layout: the first byte selects the mode, the rest is the peer's byte stream.
//! - bit 0: put a valid greeting + READY in front of the stream, so that half the runs
//!   start in the post-handshake states instead of having to discover them;
//! - bit 1: our socket is a PUB (the peer a SUB, so 0x01/0x00 data frames are read as
//!   subscriptions); otherwise a SUB talking to a PUB;
//! - bits 2..8: the stream is fed in pieces of this many bytes plus one, to exercise
//!   incremental decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../zmtp_decode_check.rs");

fuzz_target!(|data: &[u8]| check(data));
