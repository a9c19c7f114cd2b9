//! # volley
//!
//! A brokerless, ZeroMQ-style messaging transport for low-latency telemetry inside a
//! cluster.
//!
//! The crate is layered (data flows down on send, up on receive):
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | user API | [`socket`] | `Publisher`, `Subscriber`, `Pusher`, `Puller`, endpoints, options, stats |
//! | user API | [`statsd`] | StatsD/DogStatsD/Telegraf metric client that never blocks the caller |
//! | user API | [`webhook`] | Standard Webhooks emitter: signed, retried, dead-lettered |
//! | hand-off | [`ring`] | lock-free SPSC/MPSC rings with an [`ring::OverflowPolicy`] |
//! | driver | [`io`] | the mio I/O thread of a [`io::Context`] |
//! | protocol | [`proto`] | sans-IO state machines (ZMTP session, subscription table) |
//! | bytes | [`wire`] | encode/decode only (ZMTP greeting, frames, commands) |
//!
//! `wire` and `proto` never touch a socket, a thread or the clock: every entry point takes
//! `now` and bytes in and hands bytes and deadlines out, which makes them testable with
//! synthetic time and fuzzable.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod io;
pub mod proto;
pub mod ring;
pub mod socket;
pub mod statsd;
pub mod webhook;
pub mod wire;

pub(crate) mod sync;
