//! Building an item in its slot rather than moving a finished one in.
//!
//! A push moves its item into the slot, which copies the whole value. For an item that is
//! mostly spare capacity (the StatsD client's 248-byte line buffer, with a 20-byte line
//! in it) that copy, and the cache lines of the slot it dirties, are most of a push:
//! every store must reach its line before the next push's claim (a locked CAS) can
//! complete. [`Emplace`] lets the pusher write only the bytes the item uses.

use std::mem::MaybeUninit;

use super::config::ItemSize;

/// Something a ring can turn into a `T` in the slot itself.
///
/// # Safety
/// [`emplace`](Self::emplace) must leave `slot` holding a valid `T` (the same value
/// [`into_item`](Self::into_item) would return), and must not panic: the ring has already
/// claimed the slot when it calls `emplace`, and the consumer waits for that slot.
pub(crate) unsafe trait Emplace<T>: Sized {
    /// Writes the item into `slot`.
    fn emplace(self, slot: &mut MaybeUninit<T>);

    /// The item as a value, for the paths that hold items outside the ring (the Buffer
    /// policy's overflow queue).
    fn into_item(self) -> T;

    /// [`ItemSize::item_size`] of the item this becomes.
    fn item_size(&self) -> usize;
}

/// A finished item, moved in whole: what every plain `push` pushes.
pub(crate) struct Owned<T>(pub(crate) T);

// SAFETY: `MaybeUninit::write` initialises the whole slot with the item, and cannot panic.
unsafe impl<T: ItemSize> Emplace<T> for Owned<T> {
    #[inline(always)]
    fn emplace(self, slot: &mut MaybeUninit<T>) {
        slot.write(self.0);
    }

    #[inline(always)]
    fn into_item(self) -> T {
        self.0
    }

    #[inline(always)]
    fn item_size(&self) -> usize {
        self.0.item_size()
    }
}
