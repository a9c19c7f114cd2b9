//! Reconnect delays: exponential from an initial delay up to a maximum, with jitter so
//! that many clients cut off together do not reconnect in lockstep.

use std::time::Duration;

/// The delay before each reconnect attempt.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
            rng: seed | 1,
        }
    }

    /// The next delay: the current step plus up to half of it again at random, then the
    /// step doubles (capped at the maximum).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter_range = step.as_nanos() as u64 / 2;
        let jitter = if jitter_range == 0 {
            0
        } else {
            self.rng % jitter_range
        };
        (step + Duration::from_nanos(jitter)).min(self.max + self.max / 2)
    }

    /// Back to the initial delay, after a connection succeeded.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_bounded_jitter_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(5000), 42);
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(b.next_delay());
        }
        let mut expect = ms(100);
        for d in &steps {
            assert!(
                *d >= expect && *d <= expect + expect / 2,
                "{d:?} vs {expect:?}"
            );
            expect = (expect * 2).min(ms(5000));
        }
        assert!(steps.last().unwrap() >= &ms(5000));
        b.reset();
        assert!(b.next_delay() < ms(150));
    }

    #[test]
    fn different_seeds_spread_out() {
        let ms = Duration::from_millis;
        let a: Vec<_> = (0..5)
            .map(|_| Backoff::new(ms(100), ms(5000), 1).next_delay())
            .collect();
        let b = Backoff::new(ms(100), ms(5000), 2).next_delay();
        let c = Backoff::new(ms(100), ms(5000), 3).next_delay();
        assert!(
            a.windows(2).all(|w| w[0] == w[1]),
            "deterministic for one seed"
        );
        assert!(a[0] != b || b != c, "jitter must depend on the seed");
    }
}
