//! Model tests: random operation sequences on a ring against a `VecDeque` oracle, for
//! every overflow policy, on every core (spsc, and mpsc on either of its cores). Every step compares the result of
//! the operation and the ring's counters with the oracle.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use volley::ring::{
    mpsc, spsc, Consumer, MpscCore, MpscProducer, OverflowPolicy, Producer, PushError, RingConfig,
    RingStats, TryPopError, WaitStrategy,
};

#[derive(Debug, Clone)]
enum Op {
    Push,
    Pop,
    PushBatch(usize),
    PopBatch(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Push),
        3 => Just(Op::Pop),
        1 => (0usize..12).prop_map(Op::PushBatch),
        1 => (0usize..12).prop_map(Op::PopBatch),
    ]
}

fn policy() -> impl Strategy<Value = OverflowPolicy> {
    prop_oneof![
        Just(OverflowPolicy::DropNewest),
        Just(OverflowPolicy::DropOldest),
        // A zero timeout makes Block deterministic on one thread: full means Timeout.
        Just(OverflowPolicy::Block {
            timeout: Some(Duration::ZERO)
        }),
        (0usize..6).prop_map(|n| OverflowPolicy::Buffer { max_bytes: n * 8 }),
    ]
}

/// The wait strategy decides which push and pop paths a ring takes (a consumer that never
/// parks lets SPSC pushes skip the wake-up and policy checks while there is room), so both
/// kinds are modelled. Nothing here waits: pops are non-blocking and Block times out at once.
fn wait() -> impl Strategy<Value = WaitStrategy> {
    prop_oneof![Just(WaitStrategy::default()), Just(WaitStrategy::BusySpin),]
}

/// What the ring should do, written as plainly as possible.
struct Oracle {
    policy: OverflowPolicy,
    capacity: usize,
    /// Buffer policy: items the consumer already took out of the overflow queue.
    batch: VecDeque<u64>,
    ring: VecDeque<u64>,
    /// Buffer policy: the shared overflow queue.
    queued: VecDeque<u64>,
    stats: RingStats,
}

/// Mirrors the consumer's refill batch size.
const OVERFLOW_BATCH: usize = 256;
const ITEM: u64 = 8;

impl Oracle {
    fn new(policy: OverflowPolicy, capacity: usize) -> Self {
        Oracle {
            policy,
            capacity,
            batch: VecDeque::new(),
            ring: VecDeque::new(),
            queued: VecDeque::new(),
            stats: RingStats {
                capacity: capacity as u64,
                ..RingStats::default()
            },
        }
    }

    fn push(&mut self, v: u64) -> Result<(), PushError<u64>> {
        let s = &mut self.stats;
        if let OverflowPolicy::Buffer { max_bytes } = self.policy {
            if !self.queued.is_empty() || self.ring.len() == self.capacity {
                if s.buffered_bytes + ITEM > max_bytes as u64 {
                    s.dropped_newest += 1;
                    return Err(PushError::BufferFull(v));
                }
                self.queued.push_back(v);
                s.buffered_bytes += ITEM;
                s.buffered_items += 1;
                s.pushed += 1;
                s.len += 1;
                return Ok(());
            }
        }
        if self.ring.len() == self.capacity {
            match self.policy {
                OverflowPolicy::DropNewest => {
                    s.dropped_newest += 1;
                    return Err(PushError::Full(v));
                }
                OverflowPolicy::Block { .. } => {
                    s.blocked += 1;
                    s.timed_out += 1;
                    return Err(PushError::Timeout(v));
                }
                OverflowPolicy::DropOldest => {
                    self.ring.pop_front();
                    s.dropped_oldest += 1;
                    s.len -= 1;
                }
                OverflowPolicy::Buffer { .. } => unreachable!(),
            }
        }
        self.ring.push_back(v);
        s.pushed += 1;
        s.len += 1;
        Ok(())
    }

    fn pop(&mut self) -> Option<u64> {
        if self.batch.is_empty() && self.ring.is_empty() && !self.queued.is_empty() {
            let n = self.queued.len().min(OVERFLOW_BATCH);
            self.batch.extend(self.queued.drain(..n));
        }
        let s = &mut self.stats;
        let v = if let Some(v) = self.batch.pop_front() {
            s.buffered_bytes -= ITEM;
            s.buffered_items -= 1;
            v
        } else {
            self.ring.pop_front()?
        };
        s.popped += 1;
        s.len -= 1;
        Some(v)
    }
}

enum Ends {
    Single(Producer<u64>),
    Multi(MpscProducer<u64>),
}

impl Ends {
    fn push(&mut self, v: u64) -> Result<(), PushError<u64>> {
        match self {
            Ends::Single(p) => p.push(v),
            Ends::Multi(p) => p.push(v),
        }
    }

    fn push_batch(&mut self, vs: Vec<u64>) -> (usize, Option<PushError<u64>>) {
        let r = match self {
            Ends::Single(p) => p.push_batch(vs),
            Ends::Multi(p) => p.push_batch(vs),
        };
        (r.pushed, r.error)
    }
}

/// Compares everything but the blocked time, which is wall-clock.
#[track_caller]
fn assert_stats(actual: RingStats, expected: RingStats) {
    let actual = RingStats {
        blocked_time: Duration::ZERO,
        ..actual
    };
    assert_eq!(actual, expected);
}

/// Which ring is modelled: spsc, or mpsc on one of its cores.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Spsc,
    Mpsc(MpscCore),
}

fn run(shape: Shape, policy: OverflowPolicy, wait: WaitStrategy, capacity: usize, ops: Vec<Op>) {
    let config = RingConfig::with_policy(policy).wait(wait);
    let (mut tx, mut rx): (Ends, Consumer<u64>) = match shape {
        Shape::Mpsc(core) => {
            let (tx, rx) = mpsc(capacity, config.mpsc_core(core));
            (Ends::Multi(tx), rx)
        }
        Shape::Spsc => {
            let (tx, rx) = spsc(capacity, config);
            (Ends::Single(tx), rx)
        }
    };
    let mut oracle = Oracle::new(policy, capacity);
    let mut next = 0u64;
    for op in ops {
        match op {
            Op::Push => {
                assert_eq!(tx.push(next), oracle.push(next), "push {next}");
                next += 1;
            }
            Op::Pop => {
                let expect = oracle.pop().ok_or(TryPopError::Empty);
                assert_eq!(rx.try_pop(), expect);
            }
            Op::PushBatch(k) => {
                let items: Vec<u64> = (next..next + k as u64).collect();
                next += k as u64;
                let mut expect_pushed = 0;
                let mut expect_err = None;
                for v in items.iter().copied() {
                    match oracle.push(v) {
                        Ok(()) => expect_pushed += 1,
                        Err(e) => {
                            expect_err = Some(e);
                            break;
                        }
                    }
                }
                assert_eq!(tx.push_batch(items), (expect_pushed, expect_err));
            }
            Op::PopBatch(k) => {
                let mut got = Vec::new();
                rx.pop_into(&mut got, k);
                let expect: Vec<u64> = std::iter::from_fn(|| oracle.pop()).take(k).collect();
                assert_eq!(got, expect);
            }
        }
        assert_stats(rx.stats(), oracle.stats);
    }
    drop(tx);
    let mut rest = Vec::new();
    while let Ok(v) = rx.try_pop() {
        rest.push(v);
    }
    let expect: Vec<u64> = std::iter::from_fn(|| oracle.pop()).collect();
    assert_eq!(rest, expect);
    assert_eq!(rx.try_pop(), Err(TryPopError::Closed));
    let s = rx.stats();
    assert_eq!(s.pushed, s.popped + s.dropped_oldest);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn spsc_matches_the_oracle(policy in policy(), wait in wait(), capacity in 1usize..6, ops in prop::collection::vec(op(), 0..200)) {
        run(Shape::Spsc, policy, wait, capacity, ops);
    }

    #[test]
    fn mpsc_matches_the_oracle(policy in policy(), wait in wait(), capacity in 1usize..6, ops in prop::collection::vec(op(), 0..200)) {
        run(Shape::Mpsc(MpscCore::Stamped), policy, wait, capacity, ops);
    }

    #[test]
    fn mpsc_published_core_matches_the_oracle(policy in policy(), wait in wait(), capacity in 1usize..6, ops in prop::collection::vec(op(), 0..200)) {
        run(Shape::Mpsc(MpscCore::Published), policy, wait, capacity, ops);
    }
}
