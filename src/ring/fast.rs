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
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// `slots.len()`, kept beside the slot pointer so a push or pop reads one line.
    capacity: usize,
}

// SAFETY: the ring hands each `T` from the producer thread to the consumer thread (so `T`
// must be `Send`); the slots are only accessed under the head/tail protocol below, which
// gives each slot a single owner at a time.
unsafe impl<T: Send> Sync for FastRing<T> {}
// SAFETY: as above; the ring owns `T`s and can be dropped on either thread.
unsafe impl<T: Send> Send for FastRing<T> {}

// Positions are running counts rather than the stamped core's `lap | index` encoding:
// "full" is `tail - head == capacity` and the next position is `+ 1`, and each side keeps
// the slot index of its own position beside it, wrapped by one compare. That is less work
// per push and pop than deriving the index from the position (measured in the commit that
// introduced it), with no division and no rounding of the capacity to a power of two.
// The counts are u64 (the crate needs 64-bit atomics for its counters anyway), so they do
// not wrap in practice, even on 32-bit targets: `drop` can find the head's slot as
// `head % capacity`, and the counts are the `pushed` / `popped` totals as they stand.

/// The producer's private view: its own tail, the slot it maps to, and a cached copy of
/// the head.
#[derive(Debug, Default)]
pub(crate) struct FastProducer {
    tail: u64,
    /// `tail % capacity`.
    tail_index: usize,
    cached_head: u64,
}

/// The consumer's private view: its own head, the slot it maps to, and a cached copy of
/// the tail.
#[derive(Debug, Default)]
pub(crate) struct FastConsumer {
    head: u64,
    /// `head % capacity`.
    head_index: usize,
    cached_tail: u64,
}

/// The slot index after `index` in a ring of `capacity` slots.
#[inline(always)]
fn next_index(index: usize, capacity: usize) -> usize {
    if index + 1 == capacity {
        0
    } else {
        index + 1
    }
}

impl<T> FastRing<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        // The same limits as every other ring (and the same panic for a capacity of 0).
        let capacity = Layout::new(capacity).capacity();
        FastRing {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            capacity,
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
        let index = p.tail_index;
        if tail - p.cached_head == capacity as u64 {
            p.cached_head = self.head.load(Ordering::Acquire);
            if tail - p.cached_head == capacity as u64 {
                return Err(item);
            }
        }
        let next = tail + 1;
        let slot = self.slot(index);
        self.write_slot(slot, item);
        p.tail = next;
        p.tail_index = next_index(index, capacity);
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
        let capacity = self.capacity;
        let mut index = p.tail_index;
        let mut pushed = 0;
        while pushed < free {
            let Some(item) = items.next() else { break };
            self.write_slot(self.slot(index), item);
            index = next_index(index, capacity);
            pushed += 1;
        }
        if pushed > 0 {
            p.tail += pushed as u64;
            p.tail_index = index;
            self.tail.store(p.tail, Ordering::Release);
        }
        pushed
    }

    #[inline(always)]
    fn slot(&self, index: usize) -> &UnsafeCell<MaybeUninit<T>> {
        debug_assert!(index < self.slots.len());
        // SAFETY: indices come only from `next_index` (or `% capacity` in `drop`), which
        // keeps them below `capacity`, the length of `slots`. Skipping the bounds check
        // matters: the index is loaded from the handle, so the compiler cannot drop the
        // check itself, and it sits on every push and pop.
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
        let capacity = self.capacity;
        let head = c.head;
        let index = c.head_index;
        if head == c.cached_tail {
            c.cached_tail = self.tail.load(Ordering::Acquire);
            if head == c.cached_tail {
                return None;
            }
        }
        let next = head + 1;
        let item = self.read_slot(self.slot(index));
        c.head = next;
        c.head_index = next_index(index, capacity);
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
        let capacity = self.capacity;
        let mut index = c.head_index;
        for _ in 0..n {
            let item = self.read_slot(self.slot(index));
            index = next_index(index, capacity);
            f(item);
        }
        if n > 0 {
            c.head += n as u64;
            c.head_index = index;
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
        let mut head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let mut index = (head % self.capacity as u64) as usize;
        while head != tail {
            drop(self.read_slot(self.slot(index)));
            index = next_index(index, self.capacity);
            head += 1;
        }
    }
}
