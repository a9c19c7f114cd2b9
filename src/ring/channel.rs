//! The two ends of a ring, the state they share, and the one place where the overflow
//! policy is applied ([`Shared::push_with`]).

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::config::{ItemSize, MpscCore, OverflowPolicy, RingConfig};
use super::emplace::{Emplace, Owned};
use super::error::{Closed, PopTimeoutError, PushBatch, PushError, TryPopError};
use super::fast::{FastConsumer, FastProducer, FastRing};
use super::published::PublishedRing;
use super::stamped::{Rejected, StampedRing};
use super::stats::{bump, Counters, RingStats};
use super::wait::Notifier;
use crate::sync::{lock, Arc, AtomicBool, AtomicUsize, Mutex, Ordering};

/// [`Shared::detour`]: the consumer is gone.
const DETOUR_CLOSED: usize = 1;
/// [`Shared::detour`]: the overflow queue is not empty.
const DETOUR_BUFFERING: usize = 2;

/// How many overflow items the consumer moves out from under the lock at once.
const OVERFLOW_BATCH: usize = 256;

pub(crate) enum Core<T> {
    /// One producer, no eviction.
    Fast(FastRing<T>),
    /// Several producers, no eviction, [`MpscCore::Published`].
    Published(PublishedRing<T>),
    /// Several producers ([`MpscCore::Stamped`]), or DropOldest with one or several.
    Stamped(StampedRing<T>),
}

impl<T> Core<T> {
    fn capacity(&self) -> usize {
        match self {
            Core::Fast(r) => r.capacity(),
            Core::Published(r) => r.capacity(),
            Core::Stamped(r) => r.layout().capacity(),
        }
    }

    /// Positions passed by the tail and by the head so far.
    fn totals(&self) -> (u64, u64) {
        match self {
            Core::Fast(r) => r.totals(),
            Core::Published(r) => r.totals(),
            Core::Stamped(r) => r.totals(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Core::Fast(r) => r.len(),
            Core::Published(r) => r.len(),
            Core::Stamped(r) => r.len(),
        }
    }
}

pub(crate) struct Shared<T> {
    core: Core<T>,
    config: RingConfig,
    /// Live producer handles; the consumer sees "closed" when this is 0 and all is drained.
    producers: AtomicUsize,
    consumer_alive: AtomicBool,
    /// Why a plain push must take the general path: [`DETOUR_CLOSED`] (the consumer is
    /// gone) and [`DETOUR_BUFFERING`] (items wait in the overflow queue). One word, so the
    /// plain path pays one load and one branch for both; the flags it mirrors stay the
    /// authority for everything else.
    detour: AtomicUsize,
    /// The consumer sleeps here for items.
    items_ready: Notifier,
    /// Producers sleep here for room (Block policy).
    room_ready: Notifier,
    /// Producers pay for a wake-up check only if the consumer may sleep.
    wake_consumer: bool,
    /// The consumer pays for a wake-up check only if a producer may sleep.
    wake_producers: bool,
    counters: Counters,
    /// Buffer policy: items that did not fit, in push order; everything in the ring is
    /// older than everything here, because producers route to this queue while it is not
    /// empty.
    overflow: Mutex<VecDeque<T>>,
    /// Items in `overflow` (not counting the consumer's batch): producers read it to route.
    overflow_queued: AtomicUsize,
    /// Whether the policy is Buffer: a plain field next to the other read-only flags, so a
    /// push on any other ring pays one predictable branch for it.
    buffer_policy: bool,
    /// An SPSC push needs nothing beyond the core's own push while the ring has room and
    /// nothing waits in the overflow queue: no consumer to wake. At a few nanoseconds per
    /// item the checks skipped are a measurable share of the cost.
    plain_push: bool,
    /// The same for a pop: no blocked producer to wake (the consumer's overflow batch,
    /// under Buffer, is looked at first).
    plain_pop: bool,
}

impl<T> Shared<T> {
    pub(crate) fn new(capacity: usize, config: RingConfig, multi_producer: bool) -> Self {
        Self::with_consumer_parking(capacity, config, multi_producer, config.wait.may_park())
    }

    fn with_consumer_parking(
        capacity: usize,
        config: RingConfig,
        multi_producer: bool,
        consumer_may_park: bool,
    ) -> Self {
        let evicting = config.policy == OverflowPolicy::DropOldest;
        let core = match (multi_producer, evicting, config.mpsc_core) {
            (false, false, _) => Core::Fast(FastRing::new(capacity)),
            (true, false, MpscCore::Published) => Core::Published(PublishedRing::new(capacity)),
            _ => Core::Stamped(StampedRing::new(capacity, multi_producer, evicting)),
        };
        let fast_core = matches!(core, Core::Fast(_));
        let buffer_policy = matches!(config.policy, OverflowPolicy::Buffer { .. });
        let wake_producers =
            matches!(config.policy, OverflowPolicy::Block { .. }) && config.wait.may_park();
        Shared {
            core,
            config,
            producers: AtomicUsize::new(1),
            consumer_alive: AtomicBool::new(true),
            detour: AtomicUsize::new(0),
            items_ready: Notifier::new(),
            room_ready: Notifier::new(),
            wake_consumer: consumer_may_park,
            wake_producers,
            counters: Counters::default(),
            overflow: Mutex::new(VecDeque::new()),
            overflow_queued: AtomicUsize::new(0),
            buffer_policy,
            plain_push: fast_core && !consumer_may_park,
            // Buffer rings too: the plain pop first looks at the consumer's overflow
            // batch, a load and a branch on every ring's pop. Leaving Buffer rings out
            // to save them made the policy cost the non-full path after all (callgrind,
            // one push and one pop of a u64 per loop, BusySpin: DropNewest and Block
            // 46.2 instructions a pair, Buffer 82.2 through the general path; with the
            // look, every policy 48.2).
            plain_pop: fast_core && !wake_producers,
        }
    }

    /// The fast core, if `plain` says its end may skip the general path.
    fn plain_core(&self, plain: bool) -> Option<NonNull<FastRing<T>>> {
        match (&self.core, plain) {
            (Core::Fast(ring), true) => Some(NonNull::from(ring)),
            _ => None,
        }
    }

    /// The core of a several-producer ring without eviction, if `plain` says its end
    /// needs no wake-up check: the [`plain_core`](Self::plain_core) of [`MpscProducer`]
    /// and of its consumer. (Evicting rings are stamped, and every stamped ring that does
    /// not evict has several producers.)
    fn plain_multi(&self, plain: bool) -> Option<MultiCore<T>> {
        match (&self.core, plain) {
            (Core::Stamped(ring), true) if self.config.policy != OverflowPolicy::DropOldest => {
                Some(MultiCore::Stamped(NonNull::from(ring)))
            }
            (Core::Published(ring), true) => Some(MultiCore::Published(NonNull::from(ring))),
            _ => None,
        }
    }

    /// A push into the stamped core, counting what it evicts: the `try_push` of every
    /// hand-off on that core.
    #[inline(always)]
    fn push_stamped<E: Emplace<T>>(&self, ring: &StampedRing<T>, item: E) -> Result<(), E> {
        ring.push(item, &mut |old| self.evicted(old))
            .map_err(|Rejected::Full(item)| item)
    }

    /// Whether a consumer that found the ring empty may report it empty: nothing waits
    /// in the overflow queue and the ring is not closed.
    #[inline(always)]
    fn nothing_else_to_pop(&self) -> bool {
        self.overflow_queued.load(Ordering::Acquire) == 0 && !self.producers_gone()
    }

    #[inline(always)]
    /// Items waiting in the ring and its overflow queue (not counting the consumer's
    /// overflow batch): two or three loads, cheap enough for a producer's fast path.
    fn waiting(&self) -> usize {
        self.core.len() + self.overflow_queued.load(Ordering::Acquire)
    }

    fn is_buffering(&self) -> bool {
        self.buffer_policy && self.overflow_queued.load(Ordering::Acquire) != 0
    }

    fn has_room(&self) -> bool {
        match &self.core {
            Core::Fast(r) => r.has_room(),
            Core::Published(r) => r.has_room(),
            Core::Stamped(r) => r.has_room(),
        }
    }

    fn consumer_gone(&self) -> bool {
        !self.consumer_alive.load(Ordering::Acquire)
    }

    fn producers_gone(&self) -> bool {
        self.producers.load(Ordering::Acquire) == 0
    }

    #[inline(always)]
    fn after_push(&self) {
        if self.wake_consumer {
            self.items_ready.notify();
        }
    }

    #[inline(always)]
    fn after_pop(&self) {
        if self.wake_producers {
            self.room_ready.notify();
        }
    }

    fn evicted(&self, item: T) {
        drop(item);
        bump(&self.counters.dropped_oldest);
    }

    fn release_producer(&self) {
        if self.producers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.items_ready.notify();
        }
    }

    pub(crate) fn stats(&self) -> RingStats {
        let c = &*self.counters;
        let (tail_total, head_total) = self.core.totals();
        let dropped_oldest = c.dropped_oldest.load(Ordering::Relaxed);
        let overflow_in = c.overflow_in.load(Ordering::Relaxed);
        let overflow_out = c.overflow_out.load(Ordering::Relaxed);
        let ring_len = self.core.len() as u64;
        let capacity = self.core.capacity() as u64;
        let buffered_items = overflow_in.saturating_sub(overflow_out);
        RingStats {
            pushed: tail_total + overflow_in,
            // The head also passes over evicted items.
            popped: head_total.saturating_sub(dropped_oldest) + overflow_out,
            dropped_newest: c.dropped_newest.load(Ordering::Relaxed),
            dropped_oldest,
            timed_out: c.timed_out.load(Ordering::Relaxed),
            rejected_closed: c.rejected_closed.load(Ordering::Relaxed),
            buffered_bytes: c.buffered_bytes.load(Ordering::Relaxed) as u64,
            buffered_items,
            blocked: c.blocked.load(Ordering::Relaxed),
            blocked_time: Duration::from_nanos(c.blocked_nanos.load(Ordering::Relaxed)),
            len: ring_len + buffered_items,
            capacity,
        }
    }
}

impl<T: ItemSize> Shared<T> {
    /// The hand-off: every push of every ring goes through here. `try_push` is the core's
    /// non-blocking push of `item` (a finished item, or one built in its slot); the
    /// policy runs only when it reports the ring full.
    #[inline(always)]
    fn push_with<E: Emplace<T>>(
        &self,
        item: E,
        mut try_push: impl FnMut(E) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        if self.consumer_gone() {
            bump(&self.counters.rejected_closed);
            return Err(PushError::Closed(item));
        }
        if self.is_buffering() {
            return self.push_overflow(item);
        }
        match try_push(item) {
            Ok(()) => {
                self.after_push();
                Ok(())
            }
            Err(item) => self.when_full(item, &mut try_push),
        }
    }

    #[cold]
    #[inline(never)]
    fn when_full<E: Emplace<T>>(
        &self,
        item: E,
        try_push: &mut impl FnMut(E) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        let c = &*self.counters;
        match self.config.policy {
            OverflowPolicy::DropNewest | OverflowPolicy::DropOldest => {
                // DropOldest rings evict inside the core and never report full; treating
                // a report as DropNewest keeps the count honest if that ever changes.
                bump(&c.dropped_newest);
                Err(PushError::Full(item))
            }
            OverflowPolicy::Buffer { .. } => self.push_overflow(item),
            OverflowPolicy::Block { timeout } => self.block(item, timeout, try_push),
        }
    }

    fn block<E: Emplace<T>>(
        &self,
        mut item: E,
        timeout: Option<Duration>,
        try_push: &mut impl FnMut(E) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        let c = &*self.counters;
        bump(&c.blocked);
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let result = loop {
            let woken = self.room_ready.wait_until(self.config.wait, deadline, || {
                self.has_room() || self.consumer_gone()
            });
            if self.consumer_gone() {
                bump(&c.rejected_closed);
                break Err(PushError::Closed(item));
            }
            match try_push(item) {
                Ok(()) => {
                    self.after_push();
                    break Ok(());
                }
                Err(back) => item = back,
            }
            if !woken {
                bump(&c.timed_out);
                break Err(PushError::Timeout(item));
            }
        };
        let waited = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        c.blocked_nanos.fetch_add(waited, Ordering::Relaxed);
        result
    }

    fn push_overflow<E: Emplace<T>>(&self, item: E) -> Result<(), PushError<E>> {
        let OverflowPolicy::Buffer { max_bytes } = self.config.policy else {
            unreachable!("only the Buffer policy routes to the overflow queue")
        };
        let c = &*self.counters;
        let size = item.item_size();
        let mut queue = lock(&self.overflow);
        let held = c.buffered_bytes.load(Ordering::Relaxed);
        if held.saturating_add(size) > max_bytes {
            drop(queue);
            bump(&c.dropped_newest);
            return Err(PushError::BufferFull(item));
        }
        queue.push_back(item.into_item());
        c.buffered_bytes.fetch_add(size, Ordering::Relaxed);
        bump(&c.overflow_in);
        self.overflow_queued.store(queue.len(), Ordering::Release);
        if queue.len() == 1 {
            // Under the lock, like the consumer's clearing: set and clear cannot cross.
            self.detour.fetch_or(DETOUR_BUFFERING, Ordering::AcqRel);
        }
        drop(queue);
        self.after_push();
        Ok(())
    }
}

/// Runs `step` until it reports nothing done or `max` steps have done something; returns
/// how many did (a batch pop, one item per step).
#[inline(always)]
fn up_to(max: usize, mut step: impl FnMut() -> bool) -> usize {
    let mut done = 0;
    while done < max && step() {
        done += 1;
    }
    done
}

/// A refusal of an [`Owned`] push, for the item inside.
#[inline(always)]
fn unwrap_owned<T>(error: PushError<Owned<T>>) -> PushError<T> {
    error.map(|Owned(item)| item)
}

/// Pushes the remaining `items` one by one after `pushed` already went in, stopping at
/// the first refusal.
fn push_each<T>(
    mut pushed: usize,
    items: impl IntoIterator<Item = T>,
    mut push: impl FnMut(T) -> Result<(), PushError<T>>,
) -> PushBatch<T> {
    for item in items {
        if let Err(error) = push(item) {
            return PushBatch {
                pushed,
                error: Some(error),
            };
        }
        pushed += 1;
    }
    PushBatch {
        pushed,
        error: None,
    }
}

/// Creates a single-producer single-consumer ring holding up to `capacity` items.
///
/// Memory: except under DropOldest, the ring allocates `capacity` rounded up to a power
/// of two slots (a mask finds a slot); it still holds `capacity` items at most.
///
/// # Panics
/// If `capacity` is 0.
pub fn spsc<T: ItemSize>(capacity: usize, config: RingConfig) -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared::new(capacity, config, false));
    (Producer::new(shared.clone()), Consumer::new(shared))
}

/// An SPSC ring whose consumer never waits on the ring itself (an I/O thread that drains
/// it when told to through its own poller): pushes skip the wake-up handshake. The
/// consumer must use only non-blocking pops.
pub(crate) fn spsc_polled<T: ItemSize>(
    capacity: usize,
    config: RingConfig,
) -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared::with_consumer_parking(
        capacity, config, false, false,
    ));
    (Producer::new(shared.clone()), Consumer::new(shared))
}

/// Creates a multi-producer single-consumer ring holding up to `capacity` items. Clone the
/// producer for each producing thread.
///
/// # Panics
/// If `capacity` is 0.
pub fn mpsc<T: ItemSize>(capacity: usize, config: RingConfig) -> (MpscProducer<T>, Consumer<T>) {
    let shared = Arc::new(Shared::new(capacity, config, true));
    (MpscProducer::new(shared.clone()), Consumer::new(shared))
}

/// The producing end of an [`spsc`] ring.
///
/// Dropping it closes the ring: the consumer drains what is left, then sees "closed".
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    fast: FastProducer,
    /// The ring's fast core when `shared.plain_push` holds, reached without going through
    /// `shared` and its core's variant: one load and one branch instead of three loads
    /// and two branches on every push (the plain path's whole cost, beyond the core's).
    plain: Option<NonNull<FastRing<T>>>,
}

// SAFETY: `plain` points into `shared`, which the handle keeps alive; the ring behind it
// is `Sync` for `T: Send`, so the handle may move to, and be shared with, another thread
// exactly as the `Arc` alone could.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as above; every use of `plain` takes `&mut self`.
unsafe impl<T: Send> Sync for Producer<T> {}

impl<T> Producer<T> {
    fn new(shared: Arc<Shared<T>>) -> Self {
        Producer {
            plain: shared.plain_core(shared.plain_push),
            shared,
            fast: FastProducer::default(),
        }
    }
}

impl<T: ItemSize> Producer<T> {
    /// Pushes `item`, applying the ring's [`OverflowPolicy`] if it is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), PushError<T>> {
        if let Some(ring) = self.plain {
            // SAFETY: `plain` points at the fast core inside `self.shared`, alive as long
            // as `self`.
            let ring = unsafe { ring.as_ref() };
            let shared = &*self.shared;
            // Acquire pairs with the consumer's close and the overflow lock's hand-over, as
            // the loads of the flags it mirrors did.
            if shared.detour.load(Ordering::Acquire) == 0 {
                return match ring.try_push(&mut self.fast, item) {
                    Ok(()) => Ok(()),
                    Err(item) => self.push_full(ring, item),
                };
            }
        }
        self.push_general(item)
    }

    /// The plain path's full ring: the policy's hand-off. Out of line, so that the
    /// plain path stays as small as before the hand-off became generic over `Emplace`
    /// (inlined there, the wrapping and unwrapping cost the two-thread SPSC bench a
    /// fifth of its rate: volley / rtrb 0.69-0.73x against 0.91-0.92x in the same runs).
    #[inline(never)]
    fn push_full(&mut self, ring: &FastRing<T>, item: T) -> Result<(), PushError<T>> {
        let fast = &mut self.fast;
        self.shared
            .when_full(Owned(item), &mut |Owned(item)| {
                ring.try_push(fast, item).map_err(Owned)
            })
            .map_err(unwrap_owned)
    }

    /// Every push the plain path does not cover: the policy's hand-off and wake-ups.
    #[inline(never)]
    fn push_general(&mut self, item: T) -> Result<(), PushError<T>> {
        let shared = &*self.shared;
        let fast = &mut self.fast;
        let pushed = match &shared.core {
            Core::Fast(ring) => shared.push_with(Owned(item), |Owned(item)| {
                ring.try_push(fast, item).map_err(Owned)
            }),
            Core::Stamped(ring) => {
                shared.push_with(Owned(item), |item| shared.push_stamped(ring, item))
            }
            Core::Published(_) => unreachable!("single-producer rings are never published"),
        };
        pushed.map_err(unwrap_owned)
    }

    /// Pushes items from `items` in order, publishing them to the consumer in as few
    /// steps as possible (one release store per run of free slots). Stops at the first
    /// refusal, which it reports with its item.
    pub fn push_batch<I: IntoIterator<Item = T>>(&mut self, items: I) -> PushBatch<T> {
        let mut items = items.into_iter();
        let mut pushed = 0;
        let shared = &*self.shared;
        if let Core::Fast(ring) = &shared.core {
            if !shared.consumer_gone() && !shared.is_buffering() {
                pushed += ring.push_from(&mut self.fast, &mut items);
                if pushed > 0 {
                    shared.after_push();
                }
            }
        }
        push_each(pushed, items, |item| self.push(item))
    }
}

impl<T> Producer<T> {
    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> RingStats {
        self.shared.stats()
    }

    /// Items pushed and not yet popped (approximate while the consumer runs; 0 means
    /// everything pushed so far has been taken). Cheaper than [`stats`](Self::stats).
    pub fn len(&self) -> usize {
        self.shared.waiting()
    }

    /// Whether everything pushed so far has been popped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the consumer is gone (every push now fails with `Closed`).
    pub fn is_closed(&self) -> bool {
        self.shared.consumer_gone()
    }

    /// The configuration this ring was made with.
    pub fn config(&self) -> RingConfig {
        self.shared.config
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.release_producer();
    }
}

/// The core of a several-producer ring that does not evict, for the plain paths of
/// [`MpscProducer`] and [`Consumer`]: held by a handle as a [`MultiCore`], used as a
/// [`MultiRef`].
#[derive(Clone, Copy)]
enum Multi<S, P> {
    Stamped(S),
    Published(P),
}

/// A pointer into the handle's `shared`.
type MultiCore<T> = Multi<NonNull<StampedRing<T>>, NonNull<PublishedRing<T>>>;

/// A [`MultiCore`] borrowed from the ring that holds it.
type MultiRef<'a, T> = Multi<&'a StampedRing<T>, &'a PublishedRing<T>>;

impl<T> MultiCore<T> {
    /// The core, borrowed for as long as `shared`, the ring it was taken from (every
    /// `MultiCore` comes from [`Shared::plain_multi`] of the ring its handle holds).
    /// `shared` only bounds the borrow (and, in debug builds, is checked to hold the
    /// pointer): the pointer saves the loads through it.
    #[inline(always)]
    fn get(self, shared: &Shared<T>) -> MultiRef<'_, T> {
        debug_assert!(match (self, &shared.core) {
            (MultiCore::Stamped(p), Core::Stamped(r)) => std::ptr::eq(p.as_ptr(), r),
            (MultiCore::Published(p), Core::Published(r)) => std::ptr::eq(p.as_ptr(), r),
            _ => false,
        });
        match self {
            // SAFETY: the pointer points into `shared` (see above), alive for the borrow.
            MultiCore::Stamped(ring) => MultiRef::Stamped(unsafe { ring.as_ref() }),
            // SAFETY: as above.
            MultiCore::Published(ring) => MultiRef::Published(unsafe { ring.as_ref() }),
        }
    }
}

/// A producing end of an [`mpsc`] ring; clone it for each producing thread.
///
/// The ring closes when the last clone is dropped.
pub struct MpscProducer<T> {
    shared: Arc<Shared<T>>,
    /// The core when the consumer never parks (as [`Producer`]'s `plain`): a push that
    /// finds room skips the hand-off's checks, which cost a several-producer push more
    /// instructions than crossbeam's `ArrayQueue` spends on a whole push.
    plain: Option<MultiCore<T>>,
}

// SAFETY: `plain` points into `shared`, which the handle keeps alive; both cores it may
// point at are `Sync` for `T: Send` and built for concurrent pushes through `&self`, so
// the handle may move to, and be shared with, other threads exactly as the `Arc` alone
// could.
unsafe impl<T: Send> Send for MpscProducer<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for MpscProducer<T> {}

impl<T> MpscProducer<T> {
    fn new(shared: Arc<Shared<T>>) -> Self {
        MpscProducer {
            plain: shared.plain_multi(!shared.wake_consumer),
            shared,
        }
    }
}

impl<T: ItemSize> MpscProducer<T> {
    /// Pushes `item`, applying the ring's [`OverflowPolicy`] if it is full.
    #[inline(always)]
    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        if let Some(core) = self.plain {
            let shared = &*self.shared;
            // One word for "the consumer is gone" and "items wait in the overflow
            // queue", as on the SPSC plain path.
            if shared.detour.load(Ordering::Acquire) == 0 {
                let pushed = match core.get(shared) {
                    MultiRef::Stamped(ring) => shared.push_stamped(ring, Owned(item)),
                    MultiRef::Published(ring) => ring.push(Owned(item)),
                };
                return match pushed {
                    Ok(()) => Ok(()),
                    Err(item) => self.push_full(core, item),
                };
            }
        }
        self.push_general(item)
    }

    /// Every push the plain path does not cover, out of line as on the SPSC producer:
    /// inlined here, the general path made `push` too large to inline into the caller,
    /// so that every push paid a call.
    #[inline(never)]
    fn push_general(&self, item: T) -> Result<(), PushError<T>> {
        self.push_emplace(Owned(item)).map_err(unwrap_owned)
    }

    /// The plain path's full ring: the policy's hand-off, out of line.
    #[inline(never)]
    fn push_full(&self, core: MultiCore<T>, item: Owned<T>) -> Result<(), PushError<T>> {
        let shared = &*self.shared;
        match core.get(shared) {
            MultiRef::Stamped(ring) => {
                shared.when_full(item, &mut |item| shared.push_stamped(ring, item))
            }
            MultiRef::Published(ring) => shared.when_full(item, &mut |item| ring.push(item)),
        }
        .map_err(unwrap_owned)
    }

    /// Pushes the item `item` builds in its slot (see [`Emplace`]), applying the ring's
    /// [`OverflowPolicy`] if it is full.
    #[inline(always)]
    pub(crate) fn push_emplace<E: Emplace<T>>(&self, item: E) -> Result<(), PushError<E>> {
        let shared = &*self.shared;
        match &shared.core {
            Core::Published(ring) => shared.push_with(item, |item| ring.push(item)),
            Core::Stamped(ring) => shared.push_with(item, |item| shared.push_stamped(ring, item)),
            Core::Fast(_) => unreachable!("mpsc rings are never fast"),
        }
    }

    /// Pushes items from `items` in order; stops at the first refusal.
    pub fn push_batch<I: IntoIterator<Item = T>>(&self, items: I) -> PushBatch<T> {
        push_each(0, items, |item| self.push(item))
    }
}

impl<T> MpscProducer<T> {
    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> RingStats {
        self.shared.stats()
    }

    /// Items pushed and not yet popped (approximate while others push and pop).
    /// Cheaper than [`stats`](Self::stats).
    pub fn len(&self) -> usize {
        self.shared.waiting()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the consumer is gone (every push now fails with `Closed`).
    pub fn is_closed(&self) -> bool {
        self.shared.consumer_gone()
    }

    /// The configuration this ring was made with.
    pub fn config(&self) -> RingConfig {
        self.shared.config
    }
}

impl<T> Clone for MpscProducer<T> {
    fn clone(&self) -> Self {
        self.shared.producers.fetch_add(1, Ordering::Relaxed);
        MpscProducer::new(self.shared.clone())
    }
}

impl<T> Drop for MpscProducer<T> {
    fn drop(&mut self) {
        self.shared.release_producer();
    }
}

/// The consuming end of a ring.
///
/// Dropping it makes every later push fail fast with [`PushError::Closed`], and wakes
/// producers blocked for room.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    fast: FastConsumer,
    /// The ring's fast core when `shared.plain_pop` holds (as [`Producer`]'s `plain`).
    plain: Option<NonNull<FastRing<T>>>,
    /// The several-producer core when no producer blocks (as [`MpscProducer`]'s
    /// `plain`), popped in `try_pop` itself beside the fast core. An earlier `#[inline]`
    /// `try_pop` with this branch grew past inlining and halved the SPSC rate; it is
    /// `#[inline(always)]` now, its slow paths out of line.
    multi: Option<MultiCore<T>>,
    /// Overflow items taken from under the lock in one go; older than anything the ring
    /// holds, so they are served first.
    overflow_batch: VecDeque<T>,
}

// SAFETY: as for `Producer`: `plain` and `multi` point into `shared`, which the handle
// keeps alive, and every use of them takes `&mut self`.
unsafe impl<T: Send> Send for Consumer<T> {}
// SAFETY: as above; `T: Sync` as well because the handle holds items of its own (the
// overflow batch), as the auto impl would require.
unsafe impl<T: Send + Sync> Sync for Consumer<T> {}

impl<T> Consumer<T> {
    fn new(shared: Arc<Shared<T>>) -> Self {
        Consumer {
            plain: shared.plain_core(shared.plain_pop),
            multi: shared.plain_multi(!shared.wake_producers),
            shared,
            fast: FastConsumer::default(),
            overflow_batch: VecDeque::new(),
        }
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> RingStats {
        self.shared.stats()
    }

    /// Items waiting in the ring and its overflow buffer.
    pub fn len(&self) -> usize {
        self.shared.stats().len as usize
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's capacity (an overflow buffer not included).
    pub fn capacity(&self) -> usize {
        self.shared.core.capacity()
    }

    /// Whether every producer is gone (items may still be waiting).
    pub fn producers_gone(&self) -> bool {
        self.shared.producers_gone()
    }

    /// The configuration this ring was made with.
    pub fn config(&self) -> RingConfig {
        self.shared.config
    }

    #[inline(always)]
    fn pop_core(&mut self) -> Option<T> {
        match &self.shared.core {
            Core::Fast(r) => r.try_pop(&mut self.fast),
            Core::Published(r) => r.pop(),
            Core::Stamped(r) => r.pop(),
        }
    }

    fn has_items(&self) -> bool {
        !self.overflow_batch.is_empty()
            || self.shared.overflow_queued.load(Ordering::Acquire) != 0
            || match &self.shared.core {
                Core::Fast(r) => r.has_items(&self.fast),
                Core::Published(r) => r.has_items(),
                Core::Stamped(r) => r.has_items(),
            }
    }
}

impl<T: ItemSize> Consumer<T> {
    /// Pops the oldest item without waiting.
    #[inline(always)]
    pub fn try_pop(&mut self) -> Result<T, TryPopError> {
        if let Some(ring) = self.plain {
            // SAFETY: `plain` points at the fast core inside `self.shared`, alive as long
            // as `self`.
            let ring = unsafe { ring.as_ref() };
            // Overflow items the consumer already took (Buffer rings) are older than the
            // ring's.
            if self.overflow_batch.is_empty() {
                if let Some(item) = ring.try_pop(&mut self.fast) {
                    return Ok(item);
                }
                // Empty as of the tail just loaded. Loading it again right away (as the
                // general path would) takes the tail's cache line from a producer that
                // is pushing, once more per empty poll: a consumer that keeps up would
                // slow the producer it waits for. Only the overflow queue and the close
                // need a look, and both live on lines that producers do not write per
                // push.
                if self.shared.nothing_else_to_pop() {
                    return Err(TryPopError::Empty);
                }
            }
        } else if let Some(core) = self.multi {
            if self.overflow_batch.is_empty() {
                let popped = match core.get(&self.shared) {
                    MultiRef::Stamped(ring) => ring.pop(),
                    MultiRef::Published(ring) => ring.pop(),
                };
                if let Some(item) = popped {
                    return Ok(item);
                }
                // As on the SPSC plain path: only the overflow queue and the close need a
                // look before reporting empty.
                if self.shared.nothing_else_to_pop() {
                    return Err(TryPopError::Empty);
                }
            }
        }
        self.try_pop_general()
    }

    /// Every pop the plain path does not cover: overflow, wake-ups, empty and closed.
    #[inline(never)]
    fn try_pop_general(&mut self) -> Result<T, TryPopError> {
        if let Some(item) = self.pop_any() {
            return Ok(item);
        }
        if self.shared.producers_gone() {
            // A producer's last push happens-before its drop: look once more.
            return self.pop_any().ok_or(TryPopError::Closed);
        }
        Err(TryPopError::Empty)
    }

    /// Pops the oldest item, waiting with the ring's [`WaitStrategy`](super::WaitStrategy)
    /// until one arrives; `Err(Closed)` once every producer is gone and all is drained.
    pub fn pop(&mut self) -> Result<T, Closed> {
        loop {
            match self.try_pop() {
                Ok(item) => return Ok(item),
                Err(TryPopError::Closed) => return Err(Closed),
                Err(TryPopError::Empty) => self.wait_for_items(None),
            };
        }
    }

    /// Like [`pop`](Self::pop), giving up after `timeout`.
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopTimeoutError> {
        // An item already waiting needs no deadline: skip the clock read.
        if let Ok(item) = self.try_pop() {
            return Ok(item);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_pop() {
                Ok(item) => return Ok(item),
                Err(TryPopError::Closed) => return Err(PopTimeoutError::Closed),
                Err(TryPopError::Empty) => {
                    if !self.wait_for_items(Some(deadline)) {
                        return self.try_pop().map_err(|e| match e {
                            TryPopError::Closed => PopTimeoutError::Closed,
                            TryPopError::Empty => PopTimeoutError::Timeout,
                        });
                    }
                }
            }
        }
    }

    /// Pops up to `max` items into `f` without waiting, releasing ring slots in as few
    /// steps as possible. Returns how many were popped.
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut n = 0;
        while n < max {
            match self.overflow_batch.front() {
                Some(_) => {
                    if let Some(item) = self.take_from_overflow_batch() {
                        f(item);
                        n += 1;
                    }
                }
                None => break,
            }
        }
        if n < max {
            let popped = match &self.shared.core {
                Core::Fast(r) => r.pop_into(&mut self.fast, max - n, &mut f),
                Core::Published(r) => up_to(max - n, || r.pop().map(&mut f).is_some()),
                Core::Stamped(r) => up_to(max - n, || r.pop().map(&mut f).is_some()),
            };
            if popped > 0 {
                self.shared.after_pop();
            }
            n += popped;
        }
        while n < max {
            match self.pop_any() {
                Some(item) => {
                    f(item);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Pops up to `max` items without waiting, showing each to `f` by reference before
    /// dropping it: on the stamped core the items are never moved out of their slots.
    /// Returns how many were popped. `f` should be short (a copy, not a system call):
    /// on that core a producer that laps the ring waits for the slot being shown.
    pub(crate) fn pop_batch_ref(&mut self, max: usize, mut f: impl FnMut(&T)) -> usize {
        let shared = &*self.shared;
        if matches!(shared.core, Core::Fast(_))
            || !self.overflow_batch.is_empty()
            || shared.overflow_queued.load(Ordering::Acquire) != 0
        {
            // Overflow items are values already, and the order between them and the ring
            // is `pop_batch`'s business.
            return self.pop_batch(max, |item| f(&item));
        }
        let popped = match &shared.core {
            Core::Published(ring) => up_to(max, || ring.pop_ref(&mut f)),
            Core::Stamped(ring) => up_to(max, || ring.pop_ref(&mut f)),
            Core::Fast(_) => unreachable!("handled above"),
        };
        if popped > 0 {
            shared.after_pop();
        }
        popped
    }

    /// Pops up to `max` items onto the end of `out` without waiting.
    pub fn pop_into(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        self.pop_batch(max, |item| out.push(item))
    }

    /// Waits (with the ring's strategy) until an item may be there or the ring closes.
    /// Returns false if the deadline passed first.
    fn wait_for_items(&self, deadline: Option<Instant>) -> bool {
        let shared = &*self.shared;
        shared
            .items_ready
            .wait_until(shared.config.wait, deadline, || {
                self.has_items() || shared.producers_gone()
            })
    }

    /// The next item in order: the overflow batch (oldest), the ring, then the shared
    /// overflow queue.
    #[inline(always)]
    fn pop_any(&mut self) -> Option<T> {
        if !self.overflow_batch.is_empty() {
            return self.take_from_overflow_batch();
        }
        if let Some(item) = self.pop_core() {
            self.shared.after_pop();
            return Some(item);
        }
        if self.shared.overflow_queued.load(Ordering::Acquire) != 0 {
            return self.refill_from_overflow();
        }
        None
    }

    #[cold]
    fn refill_from_overflow(&mut self) -> Option<T> {
        let shared = self.shared.clone();
        let mut queue = lock(&shared.overflow);
        // A producer pushes into the ring only while this queue is empty, so what the ring
        // holds now is older than the queue; the lock makes its earlier pushes visible.
        if let Some(item) = self.pop_core() {
            drop(queue);
            shared.after_pop();
            return Some(item);
        }
        if shared.core.len() > 0 {
            // Nothing to pop, yet positions are claimed: a producer of a several-producer
            // ring is still writing the oldest one. Items behind it may be older than the
            // queue's (one producer's ring item, the same producer's next one queued while
            // the ring was full), so the queue waits until that claim is written. Taking
            // the queue here reordered a producer's items (found by the mpsc stress test:
            // an item 9,000 places late).
            return None;
        }
        let n = queue.len().min(OVERFLOW_BATCH);
        self.overflow_batch.extend(queue.drain(..n));
        shared.overflow_queued.store(queue.len(), Ordering::Release);
        if queue.is_empty() {
            shared.detour.fetch_and(!DETOUR_BUFFERING, Ordering::AcqRel);
        }
        drop(queue);
        self.take_from_overflow_batch()
    }

    fn take_from_overflow_batch(&mut self) -> Option<T> {
        let item = self.overflow_batch.pop_front()?;
        let c = &*self.shared.counters;
        c.buffered_bytes
            .fetch_sub(item.item_size(), Ordering::Relaxed);
        bump(&c.overflow_out);
        Some(item)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.consumer_alive.store(false, Ordering::Release);
        self.shared.detour.fetch_or(DETOUR_CLOSED, Ordering::AcqRel);
        self.shared.room_ready.notify();
    }
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> std::fmt::Debug for MpscProducer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpscProducer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("stats", &self.stats())
            .finish()
    }
}
