//! Waiting for the other side of a ring, without lost wake-ups.
//!
//! A side that wants to sleep registers itself (an `AcqRel` RMW on `sleepers`), then
//! re-checks its condition, then sleeps on a condition variable. The side that makes
//! progress publishes it, then does an `AcqRel` RMW on the same `sleepers` word and wakes
//! the sleepers if it sees any. The two RMWs are totally ordered: either the waker's comes
//! second (it sees the sleeper and wakes it; the sleeper holds the mutex from registering
//! until it waits, so the wake cannot fall in between), or the sleeper's comes second and
//! reads from the waker's, which makes the published progress visible to the re-check.
//! The argument needs only acquire/release, which loom models exactly.
//!
//! The RMW costs a locked instruction on every push or pop, so it is done only when the
//! other side's [`WaitStrategy`] may park.
//!
//! One wake per sleep: a sleeper stays registered until it runs again, which takes a
//! scheduler wake-up (tens of microseconds on a busy host). Every push in that window
//! used to take the mutex and make a futex call (std's `notify_all` always does); an I/O
//! thread pushing a burst into the ring of a parked consumer then spent most of its time
//! in those calls (a multicast subscriber in blocking mode received 0.41-0.92 M of 2 M
//! messages, the rest dropped and counted). `woken` lets the first waker through
//! and turns the others away until a sleeper registers again. That keeps the argument
//! above: a sleeper clears `woken` under the mutex before registering, so a waker that
//! finds it already set follows one that set it after the sleeper's registration; that
//! waker's `wake_all` takes the mutex and so comes after the sleeper's wait began, and
//! the sleeper re-checks its condition after its wake-up (its `fetch_sub` on `sleepers`
//! acquires what every waker counted in between published).

use std::time::{Duration, Instant};

use crate::sync::{lock, spin_loop, yield_now, AtomicBool, AtomicUsize, Condvar, Mutex, Ordering};

use super::config::WaitStrategy;

#[derive(Debug)]
pub(crate) struct Notifier {
    sleepers: AtomicUsize,
    /// Set by the waker that wakes the current sleepers; cleared by each sleeper as it
    /// registers (see the module's comment).
    woken: AtomicBool,
    /// Calls of `wake_all`, for the tests.
    #[cfg(all(test, not(loom)))]
    wakes: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
}

/// How often a spinning waiter looks at the clock.
const SPINS_PER_CLOCK_CHECK: u32 = 128;

impl Notifier {
    pub(crate) fn new() -> Self {
        Notifier {
            sleepers: AtomicUsize::new(0),
            woken: AtomicBool::new(false),
            #[cfg(all(test, not(loom)))]
            wakes: AtomicUsize::new(0),
            mutex: Mutex::new(()),
            condvar: Condvar::new(),
        }
    }

    /// Wakes every sleeper. Call after publishing the progress they wait for.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.sleepers.fetch_add(0, Ordering::AcqRel) != 0 {
            self.wake_once();
        }
    }

    /// Wakes the sleepers unless another waker already did since they registered.
    #[cold]
    #[inline(never)]
    fn wake_once(&self) {
        if !self.woken.load(Ordering::Acquire) && !self.woken.swap(true, Ordering::AcqRel) {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        #[cfg(all(test, not(loom)))]
        self.wakes.fetch_add(1, Ordering::Relaxed);
        // Taking the mutex orders this wake after any sleeper's registration-to-wait
        // window.
        drop(lock(&self.mutex));
        self.condvar.notify_all();
    }

    /// Waits until `ready()` holds or `deadline` passes, using `strategy`. Returns whether
    /// `ready()` held.
    pub(crate) fn wait_until(
        &self,
        strategy: WaitStrategy,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if ready() {
            return true;
        }
        match strategy {
            WaitStrategy::BusySpin => spin_until(deadline, u32::MAX, &mut ready, spin_loop),
            WaitStrategy::Yield => spin_until(deadline, u32::MAX, &mut ready, yield_now),
            WaitStrategy::Park => self.park_until(deadline, &mut ready),
            WaitStrategy::SpinThenPark { spins } => {
                match spin_until(deadline, spins, &mut ready, spin_loop) {
                    true => true,
                    false if expired(deadline) => false,
                    false => self.park_until(deadline, &mut ready),
                }
            }
        }
    }

    fn park_until(&self, deadline: Option<Instant>, ready: &mut impl FnMut() -> bool) -> bool {
        loop {
            let guard = lock(&self.mutex);
            self.woken.store(false, Ordering::Release);
            self.sleepers.fetch_add(1, Ordering::AcqRel);
            let done = ready();
            let timed_out = if done {
                false
            } else {
                match deadline {
                    None => {
                        drop(self.condvar.wait(guard));
                        false
                    }
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        None => true,
                        Some(left) if left == Duration::ZERO => true,
                        Some(left) => {
                            drop(self.condvar.wait_timeout(guard, left));
                            false
                        }
                    },
                }
            };
            self.sleepers.fetch_sub(1, Ordering::AcqRel);
            if done || ready() {
                return true;
            }
            if timed_out || expired(deadline) {
                return false;
            }
        }
    }
}

fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Spins up to `spins` checks (or forever with `u32::MAX`) until ready or the deadline.
fn spin_until(
    deadline: Option<Instant>,
    spins: u32,
    ready: &mut impl FnMut() -> bool,
    pause: fn(),
) -> bool {
    let mut n: u32 = 0;
    loop {
        if ready() {
            return true;
        }
        n = n.wrapping_add(1);
        if spins != u32::MAX && n >= spins {
            return false;
        }
        if n % SPINS_PER_CLOCK_CHECK == 0 && expired(deadline) {
            return ready();
        }
        pause();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    impl Notifier {
        /// What `park_until` does before it waits, for a sleeper that never runs again
        /// (a thread waiting for the scheduler after its wake-up looks the same).
        fn register_sleeper(&self) {
            let _guard = lock(&self.mutex);
            self.woken.store(false, Ordering::Release);
            self.sleepers.fetch_add(1, Ordering::AcqRel);
        }
    }

    #[test]
    fn a_burst_wakes_a_sleeper_once() {
        let n = Notifier::new();
        n.notify();
        assert_eq!(n.wakes.load(Ordering::Relaxed), 0, "nobody sleeps");
        n.register_sleeper();
        for _ in 0..100 {
            n.notify();
        }
        assert_eq!(n.wakes.load(Ordering::Relaxed), 1);
        // The sleeper ran, found nothing it wanted and registered again: the next
        // notify wakes it again.
        n.register_sleeper();
        n.notify();
        n.notify();
        assert_eq!(n.wakes.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_parked_waiter_is_woken_by_each_of_its_registrations() {
        let n = Arc::new(Notifier::new());
        let ready = Arc::new(AtomicUsize::new(0));
        // The round the waiter is in: with it, the notifier below waits for that round's
        // registration, not a stale one from the round before.
        let entered = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        {
            let (n, ready, entered) = (n.clone(), ready.clone(), entered.clone());
            // Parks without a deadline: a lost wake-up leaves it asleep, and the wait
            // below reports it (a deadline would wake it and hide the loss).
            std::thread::spawn(move || {
                for round in 1..=3 {
                    entered.store(round, Ordering::Release);
                    assert!(
                        n.wait_until(WaitStrategy::Park, None, || {
                            ready.load(Ordering::Acquire) >= round
                        }),
                        "round {round} was not woken"
                    );
                }
                let _ = done_tx.send(());
            });
        }
        // A waiter left asleep stops the rounds too: every wait here ends at one deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        for round in 1..=3 {
            while entered.load(Ordering::Acquire) != round
                || n.sleepers.load(Ordering::Acquire) == 0
            {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the waiter never parked for it (asleep since an earlier \
                     round: a lost wake-up)"
                );
                std::thread::yield_now();
            }
            ready.store(round, Ordering::Release);
            n.notify();
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the waiter was not woken in round 3: a lost wake-up");
    }
}
