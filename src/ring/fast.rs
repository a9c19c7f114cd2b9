//! The single-producer single-consumer core, for every policy but DropOldest.
//!
//! Lamport's ring with the rtrb / Disruptor refinement: head and tail live on their own
//! cache lines, and each side keeps a private copy of the other side's index, reloading it
//! only when the ring looks full (producer) or empty (consumer). In steady state a push
//! touches only the slot and its own index; the shared index lines move between cores
//! once per batch rather than once per item.
//!
//! It cannot evict: an evicting producer would write the slot the consumer may be reading.
//! DropOldest rings use [`super::stamped`] instead, where per-slot stamps settle who owns
//! a slot.

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use super::layout::Layout;
use crate::sync::{AtomicU64, Ordering, UnsafeCell};

pub(crate) struct FastRing<T> {
    /// Pops so far; written only by the consumer.
    head: CachePadded<AtomicU64>,
    /// Pushes so far; written only by the producer.
    tail: CachePadded<AtomicU64>,
    /// `capacity` rounded up to a power of two, so that a position's slot is
    /// `position & mask`.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Items the ring holds at most, kept beside the slot pointer so a push or pop reads
    /// one line.
    capacity: usize,
    /// `slots.len() - 1`.
    mask: usize,
}

// SAFETY: the ring hands each `T` from the producer thread to the consumer thread (so `T`
// must be `Send`); the slots are only accessed under the head/tail protocol below, which
// gives each slot a single owner at a time.
unsafe impl<T: Send> Sync for FastRing<T> {}
// SAFETY: as above; the ring owns `T`s and can be dropped on either thread.
unsafe impl<T: Send> Send for FastRing<T> {}

// Positions are running counts rather than the stamped core's `lap | index` encoding:
// "full" is `tail - head == capacity` and the next position is `+ 1`. The slots are
// `capacity` rounded up to a power of two and a position's slot is `position & mask`:
// one instruction, where keeping each side's slot index beside its position and wrapping
// it with a compare took a load, a store and three more (callgrind, one push and one pop
// per loop: 52.2 instructions a pair before, 41.2 after; rtrb 43.2). The ring still holds
// exactly `capacity` items; the rounding costs memory only (at most twice the slots).
// Live positions are at most `capacity <= slots` apart, so no two share a slot.
// The counts are u64 (the crate needs 64-bit atomics for its counters anyway), so they do
// not wrap in practice, even on 32-bit targets, and are the `pushed` / `popped` totals as
// they stand.

/// The producer's private view: its own tail and a cached copy of the head.
#[derive(Debug, Default)]
pub(crate) struct FastProducer {
    tail: u64,
    cached_head: u64,
}

/// The consumer's private view: its own head and a cached copy of the tail.
#[derive(Debug, Default)]
pub(crate) struct FastConsumer {
    head: u64,
    cached_tail: u64,
}

impl<T> FastRing<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        // The same limits as every other ring (and the same panic for a capacity of 0).
        let capacity = Layout::new(capacity).capacity();
        let slots = capacity.next_power_of_two();
        FastRing {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            slots: (0..slots)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            capacity,
            mask: slots - 1,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Free slots as the producer sees them, reloading the head only if none look free.
    #[inline(always)]
    fn free_slots(&self, p: &mut FastProducer) -> usize {
        let free = self.capacity - (p.tail - p.cached_head) as usize;
        if free > 0 {
            return free;
        }
        p.cached_head = self.head.load(Ordering::Acquire);
        self.capacity - (p.tail - p.cached_head) as usize
    }

    /// Pushes one item, or hands it back if the ring is full.
    #[inline(always)]
    pub(crate) fn try_push(&self, p: &mut FastProducer, item: T) -> Result<(), T> {
        // Everything the push needs is read before the slot is written: the compiler cannot
        // tell that the slot (reached through a raw pointer) is not `self` or `p`, so reads
        // after the write would be redone, and wait on the store's address (measured: that
        // re-read was the hottest instruction of a push).
        let capacity = self.capacity;
        let tail = p.tail;
        if tail - p.cached_head == capacity as u64 {
            p.cached_head = self.head.load(Ordering::Acquire);
            if tail - p.cached_head == capacity as u64 {
                return Err(item);
            }
        }
        let next = tail + 1;
        let slot = self.slot(tail);
        self.write_slot(slot, item);
        p.tail = next;
        self.tail.store(next, Ordering::Release);
        Ok(())
    }

    /// Pushes items from `items` while there is room, publishing them with one store.
    /// Returns how many were pushed; stops early (without taking another item) when full.
    pub(crate) fn push_from(
        &self,
        p: &mut FastProducer,
        items: &mut impl Iterator<Item = T>,
    ) -> usize {
        let free = self.free_slots(p);
        let mut pushed = 0;
        while pushed < free {
            let Some(item) = items.next() else { break };
            self.write_slot(self.slot(p.tail + pushed as u64), item);
            pushed += 1;
        }
        if pushed > 0 {
            p.tail += pushed as u64;
            self.tail.store(p.tail, Ordering::Release);
        }
        pushed
    }

    /// The slot of `position`.
    #[inline(always)]
    fn slot(&self, position: u64) -> &UnsafeCell<MaybeUninit<T>> {
        let index = position as usize & self.mask;
        debug_assert!(index < self.slots.len());
        // SAFETY: `mask` is `slots.len() - 1` with `slots.len()` a power of two, so the
        // index is below the length. Skipping the bounds check matters: the compiler
        // cannot relate `mask` to the length itself, and it sits on every push and pop.
        unsafe { self.slots.get_unchecked(index) }
    }

    /// Writes the slot of a position between the head the producer last saw and head +
    /// capacity.
    #[inline(always)]
    fn write_slot(&self, slot: &UnsafeCell<MaybeUninit<T>>, item: T) {
        // SAFETY: the slot's position is between the head the producer last saw and head +
        // capacity (the callers' contract), so the consumer has released this slot (its
        // head store, loaded with Acquire, happens-after its read of the slot) and will not
        // read it until the tail store that follows this write publishes it. Only the
        // single producer writes.
        slot.with_mut(|p| unsafe { (*p).write(item) });
    }

    /// Moves the item out of the slot of a position below the tail the consumer loaded.
    #[inline(always)]
    fn read_slot(&self, slot: &UnsafeCell<MaybeUninit<T>>) -> T {
        // SAFETY: the slot's position is below the tail loaded with Acquire (the callers'
        // contract), so the producer's write of this slot happened-before; the producer
        // will not touch it again until the head store that follows this read. Reading
        // moves the value out exactly once: the head then moves past it.
        slot.with(|p| unsafe { (*p).assume_init_read() })
    }

    /// Pops one item, or `None` if the ring is empty.
    #[inline(always)]
    pub(crate) fn try_pop(&self, c: &mut FastConsumer) -> Option<T> {
        // As in `try_push`: read what the pop needs before touching the slot.
        let head = c.head;
        if head == c.cached_tail {
            c.cached_tail = self.tail.load(Ordering::Acquire);
            if head == c.cached_tail {
                return None;
            }
        }
        let next = head + 1;
        let item = self.read_slot(self.slot(head));
        c.head = next;
        self.head.store(next, Ordering::Release);
        Some(item)
    }

    /// Pops up to `max` items into `f`, releasing their slots with one store.
    pub(crate) fn pop_into(
        &self,
        c: &mut FastConsumer,
        max: usize,
        f: &mut impl FnMut(T),
    ) -> usize {
        // At most `capacity` apart: the tail never runs more than a ring ahead.
        let mut available = (c.cached_tail - c.head) as usize;
        if available == 0 {
            c.cached_tail = self.tail.load(Ordering::Acquire);
            available = (c.cached_tail - c.head) as usize;
        }
        let n = available.min(max);
        for i in 0..n as u64 {
            f(self.read_slot(self.slot(c.head + i)));
        }
        if n > 0 {
            c.head += n as u64;
            self.head.store(c.head, Ordering::Release);
        }
        n
    }

    /// Whether the consumer would find an item now.
    #[inline]
    pub(crate) fn has_items(&self, c: &FastConsumer) -> bool {
        c.head != c.cached_tail || c.head != self.tail.load(Ordering::Acquire)
    }

    /// Whether a push would find room now (for a producer waiting under Block).
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        tail - head != self.capacity as u64
    }

    /// Total pushes and pops so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        (tail, head)
    }

    pub(crate) fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        // The two loads are not one atomic snapshot: clamp so a racing reader never
        // reports more than the ring can hold.
        // (The head is loaded first and the tail never falls behind it.)
        (tail - head).min(self.capacity as u64) as usize
    }
}

impl<T> Drop for FastRing<T> {
    fn drop(&mut self) {
        // Both ends are gone (the ring is dropped through the last `Arc`, whose release
        // orders every earlier push and pop before this point).
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        for position in head..tail {
            drop(self.read_slot(self.slot(position)));
        }
    }
}
