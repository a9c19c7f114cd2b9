//! cargo run --release --example ring_policies
//!
//! Two producer threads push into one ring per overflow policy while a slower consumer
//! pops; prints the counters and checks that every item is accounted for.

use std::thread;
use std::time::Duration;

use volley::ring::{mpsc, OverflowPolicy, RingConfig};

fn main() {
    const PER_PRODUCER: u64 = 100_000;
    for policy in [
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Block { timeout: None },
        OverflowPolicy::Buffer {
            max_bytes: 64 << 10,
        },
    ] {
        let (tx, mut rx) = mpsc::<u64>(256, RingConfig::with_policy(policy));
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let tx = tx.clone();
                thread::spawn(move || {
                    (0..PER_PRODUCER).filter(|&i| tx.push(i).is_ok()).count() as u64
                })
            })
            .collect();
        drop(tx);
        let mut popped = 0u64;
        while rx.pop().is_ok() {
            popped += 1;
            if popped % 1000 == 0 {
                thread::sleep(Duration::from_micros(50));
            }
        }
        let accepted: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        let s = rx.stats();
        println!(
            "{policy:?}: accepted {accepted}, popped {popped}, dropped newest {}, dropped oldest {}, blocked {} ({:?})",
            s.dropped_newest, s.dropped_oldest, s.blocked, s.blocked_time
        );
        assert_eq!(s.pushed, accepted);
        assert_eq!(s.pushed, popped + s.dropped_oldest);
        assert_eq!(2 * PER_PRODUCER, accepted + s.dropped_newest + s.timed_out);
    }
}
