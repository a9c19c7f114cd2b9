//! The several-producer core of [`MpscCore::Published`](super::MpscCore) rings (every
//! policy but DropOldest): producers claim, the consumer only reads.
//!
//! The LMAX Disruptor's multi-producer sequencer, as a bounded queue. A producer claims a
//! position with a CAS on the tail, after checking it against a copy of the head that the
//! producers share beside the tail (the real head is read only when that copy says
//! full). It writes the slot and then publishes it by storing `position + 1` in the slot's
//! marker. The consumer pops a slot whose marker says published, and moves the head on.
//!
//! The difference from the stamped core (Vyukov's queue, crossbeam's `ArrayQueue`) is on
//! the consumer's side: there a pop writes every slot's stamp to free it, so the next push
//! into that slot first loads a line the consumer has just modified, then has to take it
//! over again for its stores. Here the consumer never writes a slot: a push takes over a
//! line the consumer only read, with one transfer, and learns that the slot is free from
//! the head copy on the producers' own line. The prices: nothing can evict (an evicting
//! producer cannot tell whether the consumer is reading the oldest slot, so DropOldest
//! rings stay stamped), and on a ring that runs full every push reads the head, which the
//! consumer writes on each pop, where a stamped push reads only its slot. Hence a choice
//! per ring rather than the default.

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use super::emplace::Emplace;
use super::layout::Layout;
use crate::sync::{spin_loop, AtomicUsize, Ordering, StoreOnDrop, UnsafeCell};

struct Slot<T> {
    /// `position + 1` once the item for `position` is written; older values otherwise.
    published: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// What producers write: the tail, and their shared copy of the head, on one line that
/// every push takes over anyway.
struct ProducerLine {
    tail: AtomicUsize,
    head_copy: AtomicUsize,
}

pub(crate) struct PublishedRing<T> {
    producers: CachePadded<ProducerLine>,
    /// Written only by the consumer, after it has finished with the slot it passes.
    head: CachePadded<AtomicUsize>,
    slots: Box<[Slot<T>]>,
    layout: Layout,
}

// SAFETY: values move from producer threads to the consumer, so `T: Send` suffices; a slot
// is written only by the producer whose tail CAS claimed its position, and read only by
// the consumer after the marker published it, until the head moves past it.
unsafe impl<T: Send> Sync for PublishedRing<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for PublishedRing<T> {}

impl<T> PublishedRing<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        let layout = Layout::new(capacity);
        PublishedRing {
            producers: CachePadded::new(ProducerLine {
                tail: AtomicUsize::new(0),
                head_copy: AtomicUsize::new(0),
            }),
            head: CachePadded::new(AtomicUsize::new(0)),
            slots: (0..capacity)
                .map(|_| Slot {
                    // Position 0 publishes 1: no position publishes 0.
                    published: AtomicUsize::new(0),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            layout,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.layout.capacity()
    }

    /// Whether `tail` is a whole ring ahead of `head`. In the `lap | index` encoding the
    /// difference reaches one lap exactly when the count of items reaches the capacity
    /// (the laps differ by one and the index has come round, or by more), so a head that
    /// lags the real one can only make a ring look fuller than it is.
    #[inline(always)]
    fn full(&self, head: usize, tail: usize) -> bool {
        tail.wrapping_sub(head) >= self.layout.one_lap()
    }

    /// Pushes `item`, built in its slot, or hands it back if the ring is full.
    #[inline(always)]
    pub(crate) fn push<E: Emplace<T>>(&self, item: E) -> Result<(), E> {
        let line = &*self.producers;
        let mut tail = line.tail.load(Ordering::Relaxed);
        loop {
            // Acquire: the head copy was stored (Release) by a producer that had acquired
            // the head, so the consumer's reads of the slot being reused happen-before
            // this push's writes to it.
            let mut head = line.head_copy.load(Ordering::Acquire);
            if self.full(head, tail) {
                head = self.head.load(Ordering::Acquire);
                if self.full(head, tail) {
                    // Full as of a tail that may be stale: only say so for the current one.
                    let current = line.tail.load(Ordering::Relaxed);
                    if current == tail {
                        return Err(item);
                    }
                    tail = current;
                    continue;
                }
                line.head_copy.store(head, Ordering::Release);
            }
            let next = self.layout.next(tail);
            if let Err(current) =
                line.tail
                    .compare_exchange_weak(tail, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                tail = current;
                spin_loop();
                continue;
            }
            let slot = &self.slots[self.layout.index(tail)];
            // SAFETY: the CAS made us the only claimant of `tail`, and the head had passed
            // the slot's previous position (checked above, with the Acquire that orders the
            // consumer's last read of it before this write). The consumer does not read it
            // until the marker below publishes it. `emplace` initialises it and does not
            // panic (its trait's contract), so the marker publishes a whole item.
            slot.value.with_mut(|p| item.emplace(unsafe { &mut *p }));
            slot.published
                .store(tail.wrapping_add(1), Ordering::Release);
            return Ok(());
        }
    }

    /// The slot at the head, if its item is published.
    #[inline(always)]
    fn head_slot(&self) -> Option<(usize, &Slot<T>)> {
        // Only the consumer writes the head: its own last store.
        let head = self.head.load(Ordering::Relaxed);
        let slot = &self.slots[self.layout.index(head)];
        (slot.published.load(Ordering::Acquire) == head.wrapping_add(1)).then_some((head, slot))
    }

    /// Pops the oldest item, or `None` when the ring is empty or the producer of its
    /// oldest position has not finished writing it. Consumer only.
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        let (head, slot) = self.head_slot()?;
        // SAFETY: the marker says the slot holds the item for `head` (written before the
        // Release store the Acquire load above saw); the single consumer is its only
        // reader, and producers keep off it until the head store below passes it.
        let item = slot.value.with(|p| unsafe { (*p).assume_init_read() });
        self.head.store(self.layout.next(head), Ordering::Release);
        Some(item)
    }

    /// Shows the oldest item to `f` in its slot, then drops it there and passes it:
    /// a pop without moving the item out. Returns false if there was none. Consumer only.
    #[inline]
    pub(crate) fn pop_ref(&self, f: &mut impl FnMut(&T)) -> bool {
        let Some((head, slot)) = self.head_slot() else {
            return false;
        };
        // Passes the slot even if `f` panics.
        let _pass = StoreOnDrop {
            cell: &self.head,
            value: self.layout.next(head),
        };
        // SAFETY: as in `pop`; the item is shown and dropped exactly once, before `_pass`
        // lets producers reuse the slot.
        slot.value.with_mut(|p| unsafe {
            f((*p).assume_init_ref());
            (*p).assume_init_drop();
        });
        true
    }

    /// Whether the oldest position holds a published item.
    #[inline]
    pub(crate) fn has_items(&self) -> bool {
        let head = self.head.load(Ordering::Acquire);
        let slot = &self.slots[self.layout.index(head)];
        slot.published.load(Ordering::Acquire) == head.wrapping_add(1)
    }

    /// Whether a push would find room now (for a producer waiting under Block).
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        let tail = self.producers.tail.load(Ordering::Acquire);
        !self.full(self.head.load(Ordering::Acquire), tail)
    }

    /// Positions claimed by pushes, and passed by pops, so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.producers.tail.load(Ordering::Acquire);
        (self.layout.count(tail), self.layout.count(head))
    }

    pub(crate) fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.producers.tail.load(Ordering::Acquire);
        self.layout.distance(head, tail)
    }
}

impl<T> Drop for PublishedRing<T> {
    fn drop(&mut self) {
        // No other handle exists any more, so every claimed position was also published:
        // whatever lies between head and tail is ours to drop.
        while self.pop().is_some() {}
    }
}
