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

use std::time::{Duration, Instant};

use crate::sync::{lock, spin_loop, yield_now, AtomicUsize, Condvar, Mutex, Ordering};

use super::config::WaitStrategy;

#[derive(Debug)]
pub(crate) struct Notifier {
    sleepers: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
}

/// How often a spinning waiter looks at the clock.
const SPINS_PER_CLOCK_CHECK: u32 = 128;

impl Notifier {
    pub(crate) fn new() -> Self {
        Notifier {
            sleepers: AtomicUsize::new(0),
            mutex: Mutex::new(()),
            condvar: Condvar::new(),
        }
    }

    /// Wakes every sleeper. Call after publishing the progress they wait for.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.sleepers.fetch_add(0, Ordering::AcqRel) != 0 {
            self.wake_all();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_all(&self) {
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
