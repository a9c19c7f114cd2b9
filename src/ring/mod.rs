//! Lock-free bounded rings between threads, with a chosen policy for a full ring.
//!
//! ```
//! use volley::ring::{spsc, OverflowPolicy, RingConfig};
//!
//! let (mut tx, mut rx) = spsc::<u64>(1024, RingConfig::with_policy(OverflowPolicy::DropOldest));
//! let consumer = std::thread::spawn(move || {
//!     let mut sum = 0;
//!     while let Ok(v) = rx.pop() { sum += v; }     // Err(Closed) once tx is dropped and drained
//!     (sum, rx.stats())
//! });
//! for i in 0..10_000u64 { tx.push(i).unwrap(); } // DropOldest never refuses
//! drop(tx);
//! let (_sum, stats) = consumer.join().unwrap();
//! assert_eq!(stats.pushed, stats.popped + stats.dropped_oldest);
//! ```
//!
//! # Shapes
//! * [`spsc`]: one producer, one consumer. Lamport's ring with the rtrb / Disruptor
//!   refinements (cache-padded indices, each side caching the other's index), batch push
//!   and pop that publish a whole run with one store.
//! * [`mpsc`]: cloneable producers, one consumer. By default the Disruptor's
//!   multi-producer sequencer, whose consumer never writes a slot; or, chosen with
//!   [`MpscCore::Stamped`] (and always for DropOldest), Vyukov's slot-stamped ring (the
//!   layout of crossbeam's `ArrayQueue`).
//!
//! # Overflow policies
//! [`OverflowPolicy`] is chosen per ring and applied in one place, the producer's slow
//! path, which runs only when the ring is full. Every refusal and eviction is counted in
//! [`RingStats`]; nothing is lost without a count.
//!
//! DropOldest needs a producer to take an item from the consumer's end, which Lamport's
//! ring cannot do safely (the evicting producer would overwrite the slot a consumer may be
//! reading): an SPSC ring with DropOldest is therefore built on the stamped core, where an
//! eviction is a pop by the producer and the slot stamp decides who owns the slot.
//!
//! # Waiting and closing
//! [`WaitStrategy`] says how a blocked side waits. A sleeping side is woken by the other
//! side's next push or pop, without lost wake-ups (see the loom tests). Dropping every
//! producer closes the ring for the consumer once it has drained; dropping the consumer
//! makes every later push fail at once with [`PushError::Closed`].

mod channel;
mod config;
mod emplace;
mod error;
mod fast;
mod layout;
mod published;
mod read_pause;
mod stamped;
mod stats;
mod wait;

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;

pub(crate) use channel::spsc_polled;
pub use channel::{mpsc, spsc, Consumer, MpscProducer, Producer};
pub use config::{ItemSize, MpscCore, OverflowPolicy, RingConfig, WaitStrategy};
pub(crate) use emplace::{Emplace, Owned};
pub use error::{Closed, PopTimeoutError, PushBatch, PushError, TryPopError};
pub(crate) use read_pause::ReadPause;
pub use stats::RingStats;
