//! Multi-threaded stress: millions of items through every policy from several producers
//! to a consumer that stalls now and then, with per-producer sequence numbers checked and
//! the counters reconciled exactly.
//!
//! `cargo test --release --test ring_stress` (scripts/test.sh runs it in release; a debug
//! build runs a tenth of the items).

use std::thread;
use std::time::Duration;

use volley::ring::{
    mpsc, spsc, Consumer, MpscCore, OverflowPolicy, PushError, RingConfig, RingStats, WaitStrategy,
};

const ITEMS_PER_PRODUCER: u64 = if cfg!(debug_assertions) {
    200_000
} else {
    2_000_000
};
const PRODUCER_SHIFT: u32 = 48;

/// What one producer saw: how many calls ended which way.
#[derive(Debug, Default, Clone, Copy)]
struct Outcomes {
    accepted: u64,
    full: u64,
    timeout: u64,
    buffer_full: u64,
    closed: u64,
}

impl Outcomes {
    fn record(&mut self, r: Result<(), PushError<u64>>) {
        match r {
            Ok(()) => self.accepted += 1,
            Err(PushError::Full(_)) => self.full += 1,
            Err(PushError::Timeout(_)) => self.timeout += 1,
            Err(PushError::BufferFull(_)) => self.buffer_full += 1,
            Err(PushError::Closed(_)) => self.closed += 1,
        }
    }

    fn add(self, o: Outcomes) -> Outcomes {
        Outcomes {
            accepted: self.accepted + o.accepted,
            full: self.full + o.full,
            timeout: self.timeout + o.timeout,
            buffer_full: self.buffer_full + o.buffer_full,
            closed: self.closed + o.closed,
        }
    }
}

/// Pops until closed, checking that each producer's sequence only moves forward (gaps
/// are drops; a repeat or a step back is a bug). Stalls briefly every so often so that
/// the ring fills and the policy runs.
fn consume(rx: &mut Consumer<u64>, producers: usize, strict: bool) -> u64 {
    // Start only once the full-ring policy has acted, so every run exercises it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !policy_engaged(rx.stats()) && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_micros(100));
    }
    let mut next = vec![0u64; producers];
    let mut popped = 0u64;
    while let Ok(v) = rx.pop() {
        let p = (v >> PRODUCER_SHIFT) as usize;
        let seq = v & ((1 << PRODUCER_SHIFT) - 1);
        assert!(p < producers, "corrupt item {v:#x}");
        if strict {
            assert_eq!(seq, next[p], "producer {p}: lost or reordered");
        } else {
            assert!(seq >= next[p], "producer {p}: {seq} after {}", next[p]);
        }
        next[p] = seq + 1;
        popped += 1;
        if popped % 50_000 == 0 {
            thread::sleep(Duration::from_micros(200));
        }
    }
    popped
}

#[track_caller]
fn reconcile(policy: OverflowPolicy, o: Outcomes, popped: u64, s: RingStats, calls: u64) {
    assert_eq!(
        o.accepted + o.full + o.timeout + o.buffer_full + o.closed,
        calls
    );
    assert_eq!(s.pushed, o.accepted, "{policy:?}");
    assert_eq!(s.popped, popped, "{policy:?}");
    assert_eq!(s.pushed, s.popped + s.dropped_oldest, "{policy:?}: {s:?}");
    assert_eq!(s.dropped_newest, o.full + o.buffer_full, "{policy:?}");
    assert_eq!(s.timed_out, o.timeout, "{policy:?}");
    assert_eq!(o.closed, 0);
    assert_eq!((s.len, s.buffered_bytes), (0, 0));
    match policy {
        OverflowPolicy::DropNewest => assert!(o.full > 0, "the ring never filled: test too weak"),
        OverflowPolicy::DropOldest => assert!(s.dropped_oldest > 0, "never evicted: test too weak"),
        OverflowPolicy::Block { timeout: None } => assert!(s.blocked > 0, "never blocked"),
        OverflowPolicy::Buffer { .. } => assert!(o.buffer_full > 0, "budget never reached"),
        OverflowPolicy::Block { timeout: Some(_) } => {}
    }
}

/// Whether a full ring made the policy act: a refusal, an eviction, a wait or a timeout.
fn policy_engaged(s: RingStats) -> bool {
    s.dropped_newest + s.dropped_oldest + s.timed_out + s.blocked > 0
}

fn policies() -> [OverflowPolicy; 5] {
    [
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Block { timeout: None },
        OverflowPolicy::Block {
            timeout: Some(Duration::from_micros(50)),
        },
        OverflowPolicy::Buffer {
            max_bytes: 64 * 1024,
        },
    ]
}

fn strict(policy: OverflowPolicy) -> bool {
    matches!(policy, OverflowPolicy::Block { timeout: None })
}

#[test]
fn spsc_every_policy_reconciles() {
    for policy in policies() {
        for wait in [WaitStrategy::BusySpin, WaitStrategy::default()] {
            let (mut tx, mut rx) = spsc::<u64>(1024, RingConfig::with_policy(policy).wait(wait));
            let producer = thread::spawn(move || {
                let mut o = Outcomes::default();
                for seq in 0..ITEMS_PER_PRODUCER {
                    o.record(tx.push(seq));
                }
                o
            });
            let popped = consume(&mut rx, 1, strict(policy));
            let o = producer.join().unwrap();
            reconcile(policy, o, popped, rx.stats(), ITEMS_PER_PRODUCER);
        }
    }
}

#[test]
fn mpsc_two_producers_every_policy_reconciles() {
    for policy in policies() {
        for core in [MpscCore::Stamped, MpscCore::Published] {
            // BusySpin as well: the ends of a ring whose sides never park take the plain
            // paths.
            for wait in [WaitStrategy::BusySpin, WaitStrategy::default()] {
                two_producers_reconcile(RingConfig::with_policy(policy).mpsc_core(core).wait(wait));
            }
        }
    }
}

/// Two producers push into a ring made with `config` while the consumer drains it; every
/// item is accounted for.
fn two_producers_reconcile(config: RingConfig) {
    const PRODUCERS: u64 = 2;
    let policy = config.policy;
    let (tx, mut rx) = mpsc::<u64>(1024, config);
    let handles: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut o = Outcomes::default();
                for seq in 0..ITEMS_PER_PRODUCER {
                    o.record(tx.push((p << PRODUCER_SHIFT) | seq));
                }
                o
            })
        })
        .collect();
    drop(tx);
    let popped = consume(&mut rx, PRODUCERS as usize, strict(policy));
    let o = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold(Outcomes::default(), Outcomes::add);
    reconcile(
        policy,
        o,
        popped,
        rx.stats(),
        PRODUCERS * ITEMS_PER_PRODUCER,
    );
}

#[test]
fn batch_ends_reconcile_under_pressure() {
    let (mut tx, mut rx) = spsc::<u64>(256, RingConfig::with_policy(OverflowPolicy::DropNewest));
    let producer = thread::spawn(move || {
        let mut accepted = 0;
        let mut refused = 0;
        let mut seq = 0;
        while seq < ITEMS_PER_PRODUCER {
            let end = (seq + 64).min(ITEMS_PER_PRODUCER);
            let r = tx.push_batch(seq..end);
            accepted += r.pushed as u64;
            // The refused item was taken from the range; the rest of the range is skipped.
            refused += u64::from(r.error.is_some());
            seq = end;
        }
        (accepted, refused)
    });
    let mut popped = 0u64;
    let mut last = None;
    loop {
        let mut batch = Vec::with_capacity(128);
        match rx.pop() {
            Ok(v) => batch.push(v),
            Err(_) => break,
        }
        rx.pop_into(&mut batch, 127);
        for v in batch {
            assert!(last.is_none_or(|l| v > l), "order broken at {v}");
            last = Some(v);
            popped += 1;
        }
    }
    let (accepted, refused) = producer.join().unwrap();
    let s = rx.stats();
    assert_eq!(s.pushed, accepted);
    assert_eq!(s.popped, popped);
    assert_eq!(s.dropped_newest, refused);
}
