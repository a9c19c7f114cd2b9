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
use crate::sync::{AtomicUsize, Ordering, UnsafeCell};

pub(crate) struct FastRing<T> {
    /// The next position to pop; written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// The next position to push; written only by the producer.
    tail: CachePadded<AtomicUsize>,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    layout: Layout,
}

// SAFETY: the ring hands each `T` from the producer thread to the consumer thread (so `T`
// must be `Send`); the slots are only accessed under the head/tail protocol below, which
// gives each slot a single owner at a time.
unsafe impl<T: Send> Sync for FastRing<T> {}
// SAFETY: as above; the ring owns `T`s and can be dropped on either thread.
unsafe impl<T: Send> Send for FastRing<T> {}

/// The producer's private view: its own tail and a cached copy of the head.
#[derive(Debug, Default)]
pub(crate) struct FastProducer {
    tail: usize,
    cached_head: usize,
}

/// The consumer's private view: its own head and a cached copy of the tail.
#[derive(Debug, Default)]
pub(crate) struct FastConsumer {
    head: usize,
    cached_tail: usize,
}

impl<T> FastRing<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        let layout = Layout::new(capacity);
        FastRing {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            layout,
        }
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Free slots as the producer sees them, reloading the head only if none look free.
    #[inline(always)]
    fn free_slots(&self, p: &mut FastProducer) -> usize {
        let free = self.layout.capacity() - self.layout.distance(p.cached_head, p.tail);
        if free > 0 {
            return free;
        }
        p.cached_head = self.head.load(Ordering::Acquire);
        self.layout.capacity() - self.layout.distance(p.cached_head, p.tail)
    }

    /// Pushes one item, or hands it back if the ring is full.
    #[inline(always)]
    pub(crate) fn try_push(&self, p: &mut FastProducer, item: T) -> Result<(), T> {
        // Everything the push needs is read before the slot is written: the compiler cannot
        // tell that the slot (reached through a raw pointer) is not `self.layout` or `p`,
        // so reads after the write would be redone, and wait on the store's address
        // (measured: that re-read was the hottest instruction of a push).
        let layout = self.layout;
        let tail = p.tail;
        if tail == p.cached_head.wrapping_add(layout.one_lap()) {
            p.cached_head = self.head.load(Ordering::Acquire);
            if tail == p.cached_head.wrapping_add(layout.one_lap()) {
                return Err(item);
            }
        }
        let next = layout.next(tail);
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
        let layout = self.layout;
        let start = p.tail;
        let mut tail = start;
        let mut pushed = 0;
        while pushed < free {
            let Some(item) = items.next() else { break };
            let next = layout.next(tail);
            self.write(tail, item);
            tail = next;
            pushed += 1;
        }
        p.tail = tail;
        if tail != start {
            self.tail.store(tail, Ordering::Release);
        }
        pushed
    }

    #[inline(always)]
    fn slot(&self, position: usize) -> &UnsafeCell<MaybeUninit<T>> {
        let index = self.layout.index(position);
        debug_assert!(index < self.slots.len());
        // SAFETY: positions come only from `Layout::next`, which keeps the index part
        // below `capacity`, the length of `slots`. Skipping the bounds check matters: the
        // index is masked with `one_lap - 1`, which can exceed the capacity, so the
        // compiler cannot drop the check itself, and it sits on every push and pop.
        unsafe { self.slots.get_unchecked(index) }
    }

    #[inline(always)]
    fn write(&self, position: usize, item: T) {
        self.write_slot(self.slot(position), item);
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

    #[inline(always)]
    fn read(&self, position: usize) -> T {
        self.read_slot(self.slot(position))
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
        let layout = self.layout;
        let head = c.head;
        if head == c.cached_tail {
            c.cached_tail = self.tail.load(Ordering::Acquire);
            if head == c.cached_tail {
                return None;
            }
        }
        let next = layout.next(head);
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
        let mut available = self.layout.distance(c.head, c.cached_tail);
        if available == 0 {
            c.cached_tail = self.tail.load(Ordering::Acquire);
            available = self.layout.distance(c.head, c.cached_tail);
        }
        let n = available.min(max);
        let layout = self.layout;
        let mut head = c.head;
        for _ in 0..n {
            let next = layout.next(head);
            let item = self.read(head);
            head = next;
            f(item);
        }
        c.head = head;
        if n > 0 {
            self.head.store(head, Ordering::Release);
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
        tail != head.wrapping_add(self.layout.one_lap())
    }

    /// Total pushes and pops so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        (self.layout.count(tail), self.layout.count(head))
    }

    pub(crate) fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        self.layout.distance(head, tail)
    }
}

impl<T> Drop for FastRing<T> {
    fn drop(&mut self) {
        // Both ends are gone (the ring is dropped through the last `Arc`, whose release
        // orders every earlier push and pop before this point).
        let mut head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        while head != tail {
            drop(self.read(head));
            head = self.layout.next(head);
        }
    }
}
