//! cargo run --release --example ring_policies
//!
//! A program outside the crate, linking `volley::ring`, that pushes items through every
//! overflow policy from other threads while a slower consumer pops, on both ring shapes:
//! an SPSC ring (one producer thread) and an MPSC ring (two producer threads). For each
//! ring it checks, with asserts, that every item is accounted for: what the producers saw
//! accepted is what the ring counts as pushed, everything pushed was popped or evicted,
//! every refusal is counted, and each producer's items arrive in the order it pushed them.
//! Exits 0 only if every check holds.

use std::thread;
use std::time::Duration;

use volley::ring::{mpsc, spsc, OverflowPolicy, PushError, RingConfig, RingStats};

const PER_PRODUCER: u64 = 100_000;
const CAPACITY: usize = 256;

/// What one producer saw: how many pushes were accepted, and how many came back refused
/// for each reason.
#[derive(Default)]
struct Outcome {
    accepted: u64,
    full: u64,
    timed_out: u64,
    buffer_full: u64,
}

impl Outcome {
    fn record<T>(&mut self, result: Result<(), PushError<T>>) {
        match result {
            Ok(()) => self.accepted += 1,
            Err(PushError::Full(_)) => self.full += 1,
            Err(PushError::Timeout(_)) => self.timed_out += 1,
            Err(PushError::BufferFull(_)) => self.buffer_full += 1,
            Err(PushError::Closed(_)) => panic!("the consumer is alive: no push may see Closed"),
        }
    }

    fn add(mut self, other: Outcome) -> Outcome {
        self.accepted += other.accepted;
        self.full += other.full;
        self.timed_out += other.timed_out;
        self.buffer_full += other.buffer_full;
        self
    }
}

/// An item: the producer's number in the high bits, its sequence number in the low ones.
fn item(producer: u64, seq: u64) -> u64 {
    producer << 32 | seq
}

/// Pops until the ring closes, sleeping now and then so that the ring fills up and the
/// policy has to act; checks that each producer's items come in push order.
fn consume(mut pop: impl FnMut() -> Option<u64>, producers: usize) -> u64 {
    let mut last: Vec<Option<u64>> = vec![None; producers];
    let mut popped = 0u64;
    while let Some(v) = pop() {
        let (p, seq) = ((v >> 32) as usize, v & 0xffff_ffff);
        assert!(
            last[p].is_none_or(|prev| seq > prev),
            "producer {p}: item {seq} after {:?}",
            last[p]
        );
        last[p] = Some(seq);
        popped += 1;
        if popped % 1000 == 0 {
            thread::sleep(Duration::from_micros(50));
        }
    }
    popped
}

/// The checks every ring must pass once both ends are done.
fn check(
    shape: &str,
    policy: OverflowPolicy,
    producers: u64,
    seen: Outcome,
    popped: u64,
    s: RingStats,
) {
    println!(
        "{shape} {policy:?}: accepted {}, popped {popped}, dropped newest {}, dropped oldest {}, \
         timed out {}, blocked {} ({:?})",
        seen.accepted, s.dropped_newest, s.dropped_oldest, s.timed_out, s.blocked, s.blocked_time
    );
    let attempts = producers * PER_PRODUCER;
    assert_eq!(
        s.pushed, seen.accepted,
        "pushed counts what producers saw accepted"
    );
    assert_eq!(s.popped, popped, "popped counts what the consumer got");
    assert_eq!(
        s.pushed,
        s.popped + s.dropped_oldest,
        "everything pushed is popped or evicted"
    );
    assert_eq!(
        attempts,
        seen.accepted + seen.full + seen.timed_out + seen.buffer_full,
        "every push is accepted or refused"
    );
    assert_eq!(
        s.dropped_newest,
        seen.full + seen.buffer_full,
        "every refusal is counted"
    );
    assert_eq!(s.timed_out, seen.timed_out, "every timeout is counted");
    assert_eq!(s.len, 0, "nothing is left behind");
    match policy {
        OverflowPolicy::DropOldest => {
            assert_eq!(seen.accepted, attempts, "DropOldest never refuses")
        }
        OverflowPolicy::Block { timeout: None } => {
            assert_eq!(popped, attempts, "Block without a timeout loses nothing")
        }
        _ => {}
    }
}

fn main() {
    let policies = [
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Block { timeout: None },
        OverflowPolicy::Block {
            timeout: Some(Duration::from_micros(20)),
        },
        OverflowPolicy::Buffer {
            max_bytes: 64 << 10,
        },
    ];
    for policy in policies {
        // SPSC: one producer thread, the main thread consumes.
        let (mut tx, mut rx) = spsc::<u64>(CAPACITY, RingConfig::with_policy(policy));
        let producer = thread::spawn(move || {
            let mut seen = Outcome::default();
            for seq in 0..PER_PRODUCER {
                seen.record(tx.push(item(0, seq)));
            }
            seen
        });
        let popped = consume(|| rx.pop().ok(), 1);
        let seen = producer.join().unwrap();
        check("spsc", policy, 1, seen, popped, rx.stats());

        // MPSC: two producer threads.
        let (tx, mut rx) = mpsc::<u64>(CAPACITY, RingConfig::with_policy(policy));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let tx = tx.clone();
                thread::spawn(move || {
                    let mut seen = Outcome::default();
                    for seq in 0..PER_PRODUCER {
                        seen.record(tx.push(item(p, seq)));
                    }
                    seen
                })
            })
            .collect();
        drop(tx);
        let popped = consume(|| rx.pop().ok(), 2);
        let seen = producers
            .into_iter()
            .map(|p| p.join().unwrap())
            .fold(Outcome::default(), Outcome::add);
        check("mpsc", policy, 2, seen, popped, rx.stats());
    }
    println!("all counts check out");
}
