//! Counters of one ring, readable from either end while it runs.

use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// A snapshot of a ring's counters.
///
/// Once producers and consumer are quiet, these hold exactly:
/// `pushed == popped + dropped_oldest + len` and, over all `push` calls,
/// `calls == pushed + dropped_newest + timed_out + rejected_closed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Items accepted (into the ring or its overflow buffer).
    pub pushed: u64,
    /// Items handed to the consumer.
    pub popped: u64,
    /// Items refused because the ring was full (DropNewest), or full with the overflow
    /// budget spent (Buffer).
    pub dropped_newest: u64,
    /// Accepted items evicted unread to make room (DropOldest).
    pub dropped_oldest: u64,
    /// Items handed back after a Block timeout expired.
    pub timed_out: u64,
    /// Items handed back because the consumer was gone.
    pub rejected_closed: u64,
    /// Bytes currently held in the overflow buffer (Buffer policy).
    pub buffered_bytes: u64,
    /// Items currently held in the overflow buffer (Buffer policy).
    pub buffered_items: u64,
    /// Pushes that had to wait for room (Block policy).
    pub blocked: u64,
    /// Total time pushes spent waiting for room.
    pub blocked_time: Duration,
    /// Items in the ring and its overflow buffer now.
    pub len: u64,
    /// The ring's capacity (the overflow buffer not included).
    pub capacity: u64,
}

/// The counters that are not derived from the ring's positions. They change on slow paths
/// only (a full ring, a closed end), so they share one cache line away from the indices.
pub(crate) type Counters = CachePadded<CounterCells>;

#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    pub(crate) dropped_newest: AtomicU64,
    pub(crate) dropped_oldest: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) rejected_closed: AtomicU64,
    pub(crate) blocked: AtomicU64,
    pub(crate) blocked_nanos: AtomicU64,
    /// Items ever accepted into the overflow buffer.
    pub(crate) overflow_in: AtomicU64,
    /// Items ever handed from the overflow buffer to the consumer.
    pub(crate) overflow_out: AtomicU64,
    pub(crate) buffered_bytes: AtomicUsize,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
