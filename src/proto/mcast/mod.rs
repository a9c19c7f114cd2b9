//! UDP multicast publish/subscribe, sans-IO: a [`Sender`] (one publisher's session) and
//! a [`Receiver`] (every publisher heard on one group and stream), plus a
//! [`LossGenerator`] to impair the receive path in tests and demos.
//!
//! The wire format is [`crate::wire::mcast`]; the protocol (fields, timers, defaults) is
//! written down in `docs/multicast-protocol.md`. In short: a publisher numbers its DATA
//! datagrams (`seq`) and its messages (`msg_seq`), packs small messages into one datagram
//! and fragments large ones; when idle it sends HEARTBEATs carrying its window edges
//! (the next `seq`/`msg_seq` and the oldest `seq` it can still retransmit). A receiver
//! keeps one session per publisher (told apart by source address and session id),
//! delivers each publisher's messages in order, counts every message it will never
//! deliver, and — in reliable mode — multicasts NAKs for missing datagrams after a short
//! random delay, suppressing its own NAK when it sees another receiver's for the same
//! datagrams.
//!
//! # Driving a [`Sender`] (what the I/O layer does)
//!
//! ```no_run
//! # use std::time::Instant;
//! # use volley::proto::mcast::{Sender, SenderConfig};
//! # fn send_to_group(_: &[u8]) {}
//! # fn recv_from_group() -> Option<Vec<u8>> { None }
//! let now = Instant::now();
//! let mut sender = Sender::new(SenderConfig::default(), volley::proto::mcast::random_session_id(), now)
//!     .expect("valid config");
//! let mut buf = vec![0u8; sender.config().max_datagram_size];
//! // For every message the application hands over:
//! sender.send_message(&[&b"cpu.load"[..], b"0.42"], now).unwrap();
//! // NAKs (and anything else) read from the group socket:
//! while let Some(datagram) = recv_from_group() {
//!     sender.handle_datagram(now, &datagram);
//! }
//! // Then write everything that is due, one datagram per call, to the group address:
//! while let Some(len) = sender.poll_transmit(now, &mut buf) {
//!     send_to_group(&buf[..len]);
//! }
//! // Sleep until input arrives or until this deadline, then call handle_timeout and
//! // poll_transmit again:
//! let _deadline = sender.poll_timeout();
//! ```
//!
//! Messages handed to [`Sender::send_message`] between two [`Sender::poll_transmit`]
//! loops are packed together (with the default zero linger, a busy I/O thread that drains
//! its ring before polling packs naturally and an idle one adds no delay); a positive
//! [`SenderConfig::linger`] keeps a partly filled datagram open that much longer.
//! [`Sender::flush`] closes it at once.
//!
//! # Driving a [`Receiver`]
//!
//! ```no_run
//! # use std::time::Instant;
//! # use volley::proto::mcast::{Receiver, ReceiverConfig};
//! # fn send_to_group(_: &[u8]) {}
//! # fn recv_from_group() -> Option<(Vec<u8>, std::net::SocketAddr)> { None }
//! let now = Instant::now();
//! let mut receiver = Receiver::new(ReceiverConfig::default(), now).expect("valid config");
//! let mut buf = [0u8; 64];
//! while let Some((datagram, from)) = recv_from_group() {
//!     receiver.handle_datagram(now, &datagram, from);
//! }
//! while let Some((publisher, message)) = receiver.poll_message() {
//!     // hand `message` to the application
//! #   let _ = (publisher, message);
//! }
//! // NAKs (reliable mode only) go to the group address, like data.
//! while let Some(len) = receiver.poll_transmit(now, &mut buf) {
//!     send_to_group(&buf[..len]);
//! }
//! let _deadline = receiver.poll_timeout(); // then handle_timeout(now) when it passes
//! ```
//!
//! Both sides must see the group's traffic both ways: the publisher's socket joins the
//! group to hear NAKs, and receivers hear each other's NAKs (that is how suppression
//! works). A [`LossGenerator`] goes between the socket and
//! [`Receiver::handle_datagram`]: push every received datagram in, feed the receiver
//! whatever it hands back, and add its [`LossGenerator::poll_timeout`] to the wait.
//!
//! Every input takes `now` and nothing reads the clock, so tests drive senders and
//! receivers over a simulated link with virtual time (see `tests.rs`).

mod loss;
mod receiver;
mod sender;
#[cfg(test)]
mod tests;

pub use loss::{LossConfig, LossGenerator, LossStats};
pub use receiver::{PublisherStats, Receiver, ReceiverConfig, ReceiverStats};
pub use sender::{SendError, Sender, SenderConfig, SenderStats, HEARTBEAT_CHECK_MAX};

pub use crate::proto::zmtp::Message;

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

/// One publisher as a receiver tells it apart: the source address of its datagrams and
/// the random session id it chose. A publisher that restarts gets a new session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublisherId {
    /// Where its datagrams come from.
    pub addr: SocketAddr,
    /// Its session id.
    pub session_id: u32,
}

impl fmt::Display for PublisherId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:08x}", self.addr, self.session_id)
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid multicast configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A session id for a new [`Sender`], random per call (from the standard library's
/// hash keys, so without reading the clock here).
pub fn random_session_id() -> u32 {
    random_u64() as u32
}

/// A random 64-bit value from the standard library's per-process hash keys.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x766f_6c6c_6579);
    hasher.finish()
}

/// xorshift64*: a small, seedable generator for NAK jitter and the loss generator
/// (reproducible in tests, no dependency).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // Zero is the one state xorshift never leaves.
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..=max` (modulo bias is irrelevant at these ranges).
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (max + 1)
        }
    }

    /// True with probability `p` (clamped to 0..=1).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits as a fraction in [0, 1).
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}
