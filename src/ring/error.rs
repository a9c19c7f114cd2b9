//! Errors of ring operations. Every error that refuses an item hands it back.

use std::fmt;

/// Why a push did not take its item; the item comes back inside.
#[derive(PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring was full and the policy is [`DropNewest`](super::OverflowPolicy::DropNewest).
    Full(T),
    /// The ring stayed full for the whole [`Block`](super::OverflowPolicy::Block) timeout.
    Timeout(T),
    /// The ring was full and the [`Buffer`](super::OverflowPolicy::Buffer) budget spent.
    BufferFull(T),
    /// The consumer is gone: nothing will ever read this item.
    Closed(T),
}

impl<T> PushError<T> {
    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(t)
            | PushError::Timeout(t)
            | PushError::BufferFull(t)
            | PushError::Closed(t) => t,
        }
    }

    /// The same refusal, for the item turned into something else.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> PushError<U> {
        match self {
            PushError::Full(t) => PushError::Full(f(t)),
            PushError::Timeout(t) => PushError::Timeout(f(t)),
            PushError::BufferFull(t) => PushError::BufferFull(f(t)),
            PushError::Closed(t) => PushError::Closed(f(t)),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            PushError::Full(_) => "ring full: item dropped (DropNewest)",
            PushError::Timeout(_) => "ring full: timed out waiting for room (Block)",
            PushError::BufferFull(_) => "ring full and overflow buffer budget spent (Buffer)",
            PushError::Closed(_) => "consumer gone: ring closed",
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PushError::Full(_) => "Full",
            PushError::Timeout(_) => "Timeout",
            PushError::BufferFull(_) => "BufferFull",
            PushError::Closed(_) => "Closed",
        };
        write!(f, "PushError::{name}(..)")
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why a non-blocking pop found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryPopError {
    /// Nothing to pop right now; producers still exist.
    Empty,
    /// Every producer is gone and everything they pushed has been popped.
    Closed,
}

/// Why a pop with a timeout found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopTimeoutError {
    /// Nothing arrived before the timeout.
    Timeout,
    /// Every producer is gone and everything they pushed has been popped.
    Closed,
}

/// Every producer is gone and everything they pushed has been popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for TryPopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryPopError::Empty => "ring empty",
            TryPopError::Closed => "ring closed: all producers gone",
        })
    }
}

impl fmt::Display for PopTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PopTimeoutError::Timeout => "timed out waiting for an item",
            PopTimeoutError::Closed => "ring closed: all producers gone",
        })
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring closed: all producers gone")
    }
}

impl std::error::Error for TryPopError {}
impl std::error::Error for PopTimeoutError {}
impl std::error::Error for Closed {}

/// What a batch push did: how many items went in, and the error that stopped it, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct PushBatch<T> {
    /// Items accepted before the batch ended or stopped.
    pub pushed: usize,
    /// The refusal that stopped the batch, with its item; the iterator's later items were
    /// not taken.
    pub error: Option<PushError<T>>,
}
