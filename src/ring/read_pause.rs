//! The hand-shake by which a ring's producer that must never wait (a receiving socket's
//! I/O thread) pauses for room, and its consumer resumes it.
//!
//! The producer holds what did not fit and stops producing; the consumer, having taken
//! items, tells it to offer again (in volley, by kicking the I/O thread). Neither side
//! sleeps on the other here, so the one thing to rule out is a stranded pause: a
//! producer waiting to be told while the consumer waits for items it will never get.
//! That is a store-then-load on each side (the producer raises the flag, then reads how
//! full the ring is; the consumer takes, which frees room, then reads the flag), so both
//! need a full fence: either the producer's look sees the room, or the consumer's look
//! sees the flag. The loom tests check it.

use crate::sync::{fence, AtomicBool, Ordering};

/// Raised while the producer holds items the ring had no room for.
pub(crate) struct ReadPause {
    raised: AtomicBool,
}

impl ReadPause {
    pub(crate) fn new() -> Self {
        ReadPause {
            raised: AtomicBool::new(false),
        }
    }

    /// Producer, before it looks for room: a consumer that takes items from here on
    /// sees the pause.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Producer: nothing is held any more. What it pushed before is visible to whoever
    /// sees the flag down ([`is_raised`](Self::is_raised)).
    pub(crate) fn lower(&self) {
        self.raised.store(false, Ordering::SeqCst);
    }

    /// Consumer, after it took items: whether the producer may be waiting to be told
    /// that there is room.
    pub(crate) fn raised_after_take(&self) -> bool {
        fence(Ordering::SeqCst);
        self.raised.load(Ordering::Relaxed)
    }

    /// Whether the producer holds items now.
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }
}

impl Default for ReadPause {
    fn default() -> Self {
        ReadPause::new()
    }
}

impl std::fmt::Debug for ReadPause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPause")
            .field("raised", &self.raised.load(Ordering::Relaxed))
            .finish()
    }
}
