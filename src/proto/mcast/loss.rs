//! A deterministic impairment for the receive path: drop, reorder, duplicate.
//!
//! `tc netem` is not available everywhere, so tests and demos inject loss here, between
//! the socket and [`super::Receiver::handle_datagram`]. It is off by default
//! ([`LossConfig::default`] passes everything through unchanged, in order).

use super::Rng;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a [`LossGenerator`] does to the datagrams pushed through it.
#[derive(Clone, Debug, PartialEq)]
pub struct LossConfig {
    /// Probability that a datagram is dropped (default 0).
    pub drop_rate: f64,
    /// A fixed drop pattern, repeated: datagram `n` (counting from 0) is dropped when
    /// `pattern[n % pattern.len()]` is true (default empty: no pattern). Applied before
    /// `drop_rate`. `[false, false, true]` drops every third datagram; a run of `true`
    /// makes a burst.
    pub pattern: Vec<bool>,
    /// Probability that a datagram is held back for [`LossConfig::reorder_delay`], so
    /// that later ones overtake it (default 0).
    pub reorder_rate: f64,
    /// How long a reordered datagram is held (default 1 ms).
    pub reorder_delay: Duration,
    /// Probability that a datagram is delivered twice (default 0).
    pub duplicate_rate: f64,
    /// Seed of the generator (default 1): the same seed and input give the same output.
    pub seed: u64,
}

impl Default for LossConfig {
    fn default() -> LossConfig {
        LossConfig {
            drop_rate: 0.0,
            pattern: Vec::new(),
            reorder_rate: 0.0,
            reorder_delay: Duration::from_millis(1),
            duplicate_rate: 0.0,
            seed: 1,
        }
    }
}

impl LossConfig {
    /// A generator dropping datagrams at random with probability `rate`.
    pub fn drop_rate(rate: f64, seed: u64) -> LossConfig {
        LossConfig {
            drop_rate: rate,
            seed,
            ..LossConfig::default()
        }
    }

    /// Whether this configuration changes nothing.
    pub fn is_off(&self) -> bool {
        self.drop_rate <= 0.0
            && !self.pattern.contains(&true)
            && self.reorder_rate <= 0.0
            && self.duplicate_rate <= 0.0
    }
}

/// What a [`LossGenerator`] did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossStats {
    /// Items pushed in.
    pub received: u64,
    /// Items dropped (by pattern or rate).
    pub dropped: u64,
    /// Items held back to be overtaken.
    pub reordered: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Items handed out by [`LossGenerator::pop`].
    pub delivered: u64,
}

/// Drops, reorders and duplicates items (datagrams, or `(datagram, source)` pairs)
/// according to a [`LossConfig`], sans-IO: push what the socket read with
/// [`LossGenerator::push`], hand what [`LossGenerator::pop`] returns to the receiver,
/// and wake up at [`LossGenerator::poll_timeout`] for the held-back ones.
#[derive(Debug)]
pub struct LossGenerator<T> {
    config: LossConfig,
    rng: Rng,
    index: u64,
    ready: VecDeque<T>,
    /// Held-back items in release order (one fixed delay keeps pushes sorted).
    delayed: VecDeque<(Instant, T)>,
    stats: LossStats,
}

impl<T: Clone> LossGenerator<T> {
    /// A generator applying `config`.
    pub fn new(config: LossConfig) -> LossGenerator<T> {
        let rng = Rng::new(config.seed);
        LossGenerator {
            config,
            rng,
            index: 0,
            ready: VecDeque::new(),
            delayed: VecDeque::new(),
            stats: LossStats::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &LossConfig {
        &self.config
    }

    /// Takes one item that arrived at `now`.
    pub fn push(&mut self, now: Instant, item: T) {
        let index = self.index;
        self.index += 1;
        self.stats.received += 1;
        let pattern = &self.config.pattern;
        let by_pattern = !pattern.is_empty() && pattern[(index % pattern.len() as u64) as usize];
        if by_pattern || self.rng.chance(self.config.drop_rate) {
            self.stats.dropped += 1;
            return;
        }
        if self.rng.chance(self.config.duplicate_rate) {
            self.stats.duplicated += 1;
            self.place(now, item.clone());
        }
        self.place(now, item);
    }

    fn place(&mut self, now: Instant, item: T) {
        if self.rng.chance(self.config.reorder_rate) {
            self.stats.reordered += 1;
            self.delayed
                .push_back((now + self.config.reorder_delay, item));
        } else {
            self.ready.push_back(item);
        }
    }

    /// The next item to deliver at `now`, if any: held-back items whose delay is over
    /// first, then the others in arrival order.
    pub fn pop(&mut self, now: Instant) -> Option<T> {
        let item = if self.delayed.front().is_some_and(|(at, _)| *at <= now) {
            self.delayed.pop_front().map(|(_, item)| item)
        } else {
            self.ready.pop_front()
        };
        if item.is_some() {
            self.stats.delivered += 1;
        }
        item
    }

    /// When the next held-back item is released.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.delayed.front().map(|(at, _)| *at)
    }

    /// Items held back or waiting to be popped.
    pub fn pending(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    /// What happened so far.
    pub fn stats(&self) -> LossStats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(generator: &mut LossGenerator<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| generator.pop(now)).collect()
    }

    #[test]
    fn off_by_default_passes_everything_in_order() {
        assert!(LossConfig::default().is_off());
        let mut generator = LossGenerator::new(LossConfig::default());
        let now = Instant::now();
        for i in 0..1000 {
            generator.push(now, i);
        }
        assert_eq!(drain(&mut generator, now), (0..1000).collect::<Vec<_>>());
        assert_eq!(generator.poll_timeout(), None);
    }

    #[test]
    fn pattern_drops_exactly_the_marked_positions() {
        let mut generator = LossGenerator::new(LossConfig {
            pattern: vec![false, false, true],
            ..LossConfig::default()
        });
        let now = Instant::now();
        for i in 0..9 {
            generator.push(now, i);
        }
        assert_eq!(drain(&mut generator, now), [0, 1, 3, 4, 6, 7]);
        assert_eq!(generator.stats().dropped, 3);
    }

    #[test]
    fn rate_is_close_and_reproducible() {
        let run = |seed| {
            let mut generator = LossGenerator::new(LossConfig::drop_rate(0.1, seed));
            let now = Instant::now();
            for i in 0..100_000 {
                generator.push(now, i);
            }
            drain(&mut generator, now)
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        let dropped = 100_000 - a.len();
        assert!((9_000..11_000).contains(&dropped), "dropped {dropped}");
    }

    #[test]
    fn reorder_holds_back_and_duplicate_copies() {
        let mut generator = LossGenerator::new(LossConfig {
            reorder_rate: 0.5,
            duplicate_rate: 0.3,
            reorder_delay: Duration::from_millis(1),
            seed: 3,
            ..LossConfig::default()
        });
        let start = Instant::now();
        for i in 0..1000 {
            generator.push(start, i);
        }
        let mut out = drain(&mut generator, start);
        assert!(out.len() < 1000, "some are held back");
        let release = generator.poll_timeout().expect("held back");
        assert_eq!(release, start + Duration::from_millis(1));
        out.extend(drain(&mut generator, release));
        let stats = generator.stats();
        assert_eq!(out.len() as u64, 1000 + stats.duplicated);
        assert!(stats.duplicated > 200 && stats.reordered > 400, "{stats:?}");
        let mut sorted = out.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>(), "nothing lost");
        assert_ne!(out, {
            let mut s = out.clone();
            s.sort_unstable();
            s
        });
    }
}
