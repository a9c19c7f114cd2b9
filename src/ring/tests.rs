//! Unit tests for each policy and the boundary cases: capacity 1, wrap-around, full +
//! close, timeout expiry, wake-ups.

use std::thread;
use std::time::{Duration, Instant};

use super::*;

fn cfg(policy: OverflowPolicy) -> RingConfig {
    RingConfig::with_policy(policy)
}

const ALL_WAITS: [WaitStrategy; 4] = [
    WaitStrategy::BusySpin,
    WaitStrategy::Yield,
    WaitStrategy::Park,
    WaitStrategy::SpinThenPark { spins: 100 },
];

#[track_caller]
fn drain<T: ItemSize>(rx: &mut Consumer<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Ok(v) = rx.try_pop() {
        out.push(v);
    }
    out
}

#[test]
fn drop_newest_refuses_and_counts_spsc_and_mpsc() {
    let (mut tx, mut rx) = spsc::<u32>(3, cfg(OverflowPolicy::DropNewest));
    for i in 0..3 {
        tx.push(i).unwrap();
    }
    assert_eq!(tx.push(3), Err(PushError::Full(3)));
    assert_eq!(tx.push(4), Err(PushError::Full(4)));
    assert_eq!(drain(&mut rx), [0, 1, 2]);
    let s = rx.stats();
    assert_eq!(
        (s.pushed, s.popped, s.dropped_newest, s.dropped_oldest),
        (3, 3, 2, 0)
    );

    let (tx, mut rx) = mpsc::<u32>(2, cfg(OverflowPolicy::DropNewest));
    tx.push(1).unwrap();
    tx.clone().push(2).unwrap();
    assert_eq!(tx.push(3).unwrap_err().into_inner(), 3);
    assert_eq!(drain(&mut rx), [1, 2]);
    assert_eq!(rx.stats().dropped_newest, 1);
}

#[test]
fn drop_oldest_keeps_the_newest_in_order() {
    for cap in [1, 2, 3, 7] {
        let (mut tx, mut rx) = spsc::<u32>(cap, cfg(OverflowPolicy::DropOldest));
        for i in 0..20 {
            tx.push(i).unwrap();
        }
        let expect: Vec<u32> = (20 - cap as u32..20).collect();
        assert_eq!(drain(&mut rx), expect, "capacity {cap}");
        let s = rx.stats();
        assert_eq!(s.pushed, 20);
        assert_eq!(s.dropped_oldest, 20 - cap as u64);
        assert_eq!(s.popped, cap as u64);
    }
}

#[test]
fn drop_oldest_mpsc_interleaved_with_pops() {
    let (tx, mut rx) = mpsc::<u32>(2, cfg(OverflowPolicy::DropOldest));
    tx.push(0).unwrap();
    tx.push(1).unwrap();
    tx.push(2).unwrap(); // evicts 0
    assert_eq!(rx.try_pop(), Ok(1));
    tx.push(3).unwrap();
    tx.push(4).unwrap(); // evicts 2
    assert_eq!(drain(&mut rx), [3, 4]);
    let s = rx.stats();
    assert_eq!((s.pushed, s.popped, s.dropped_oldest), (5, 3, 2));
}

#[test]
fn wrap_around_many_laps_at_every_small_capacity() {
    for cap in 1..=9 {
        for policy in [OverflowPolicy::DropNewest, OverflowPolicy::DropOldest] {
            let (mut tx, mut rx) = spsc::<usize>(cap, cfg(policy));
            let mut next = 0;
            for round in 0..50 {
                let n = 1 + round % cap;
                for _ in 0..n {
                    tx.push(next).unwrap();
                    next += 1;
                }
                let got = drain(&mut rx);
                assert_eq!(
                    got,
                    (next - n..next).collect::<Vec<_>>(),
                    "cap {cap} {policy:?}"
                );
            }
            assert_eq!(rx.stats().pushed, next as u64);
            assert_eq!(rx.stats().popped, next as u64);
        }
    }
}

#[test]
fn block_times_out_and_hands_the_item_back() {
    for wait in ALL_WAITS {
        let timeout = Duration::from_millis(20);
        let (mut tx, _rx) = spsc::<u8>(
            1,
            cfg(OverflowPolicy::Block {
                timeout: Some(timeout),
            })
            .wait(wait),
        );
        tx.push(1).unwrap();
        let start = Instant::now();
        assert_eq!(tx.push(2), Err(PushError::Timeout(2)), "{wait:?}");
        assert!(start.elapsed() >= timeout, "{wait:?} returned early");
        let s = tx.stats();
        assert_eq!((s.blocked, s.timed_out, s.pushed), (1, 1, 1));
        assert!(s.blocked_time >= timeout);
    }
}

#[test]
fn block_waits_until_the_consumer_makes_room() {
    for wait in ALL_WAITS {
        let (mut tx, mut rx) =
            spsc::<u32>(1, cfg(OverflowPolicy::Block { timeout: None }).wait(wait));
        tx.push(0).unwrap();
        let consumer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            let mut got = Vec::new();
            while let Ok(v) = rx.pop() {
                got.push(v);
            }
            got
        });
        for i in 1..100 {
            tx.push(i).unwrap();
        }
        let stats = tx.stats();
        drop(tx);
        assert_eq!(
            consumer.join().unwrap(),
            (0..100).collect::<Vec<_>>(),
            "{wait:?}"
        );
        assert!(
            stats.blocked >= 1,
            "{wait:?}: the first push after the full one must block"
        );
    }
}

#[test]
fn block_mpsc_wakes_several_blocked_producers() {
    let (tx, mut rx) = mpsc::<u32>(
        1,
        cfg(OverflowPolicy::Block { timeout: None }).wait(WaitStrategy::Park),
    );
    tx.push(u32::MAX).unwrap();
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..50 {
                    tx.push(p * 1000 + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut got = Vec::new();
    while let Ok(v) = rx.pop() {
        got.push(v);
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(got.len(), 151);
    for p in 0..3 {
        let mine: Vec<_> = got
            .iter()
            .copied()
            .filter(|v| *v / 1000 == p && *v != u32::MAX)
            .collect();
        assert_eq!(mine, (0..50).map(|i| p * 1000 + i).collect::<Vec<_>>());
    }
}

#[test]
fn blocked_producer_fails_fast_when_the_consumer_goes() {
    let (mut tx, rx) = spsc::<u8>(
        1,
        cfg(OverflowPolicy::Block { timeout: None }).wait(WaitStrategy::Park),
    );
    tx.push(1).unwrap();
    let dropper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        drop(rx);
    });
    assert_eq!(tx.push(2), Err(PushError::Closed(2)));
    dropper.join().unwrap();
    assert_eq!(tx.push(3), Err(PushError::Closed(3)));
    assert_eq!(tx.stats().rejected_closed, 2);
}

#[test]
fn buffer_overflows_in_order_up_to_its_byte_budget() {
    // Each u64 counts 8 bytes: a 24-byte budget holds 3 beyond the ring.
    let (mut tx, mut rx) = spsc::<u64>(2, cfg(OverflowPolicy::Buffer { max_bytes: 24 }));
    for i in 0..5 {
        tx.push(i).unwrap();
    }
    let s = tx.stats();
    assert_eq!((s.buffered_items, s.buffered_bytes, s.len), (3, 24, 5));
    assert_eq!(tx.push(5), Err(PushError::BufferFull(5)));
    assert_eq!(rx.try_pop(), Ok(0));
    // The ring has room now, but the overflow is not empty: order says overflow first.
    tx.push(6).unwrap_err();
    assert_eq!(drain(&mut rx), [1, 2, 3, 4]);
    tx.push(7).unwrap();
    assert_eq!(drain(&mut rx), [7]);
    let s = rx.stats();
    assert_eq!(
        (s.pushed, s.popped, s.dropped_newest, s.buffered_bytes),
        (6, 6, 2, 0)
    );
}

#[test]
fn buffer_preserves_order_while_the_consumer_drains_concurrently() {
    let (tx, mut rx) = mpsc::<u64>(
        4,
        cfg(OverflowPolicy::Buffer {
            max_bytes: usize::MAX,
        }),
    );
    let producer = thread::spawn(move || {
        for i in 0..200_000u64 {
            tx.push(i).unwrap();
        }
    });
    let mut expect = 0;
    while let Ok(v) = rx.pop() {
        assert_eq!(v, expect);
        expect += 1;
    }
    producer.join().unwrap();
    assert_eq!(expect, 200_000);
    assert_eq!(rx.stats().buffered_bytes, 0);
}

#[test]
fn closing_lets_the_consumer_drain_then_reports_closed() {
    for policy in [
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Buffer { max_bytes: 64 },
    ] {
        let (mut tx, mut rx) = spsc::<u64>(2, cfg(policy));
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        let _ = tx.push(3);
        drop(tx);
        assert!(rx.producers_gone());
        let mut got = Vec::new();
        loop {
            match rx.try_pop() {
                Ok(v) => got.push(v),
                Err(e) => {
                    assert_eq!(e, TryPopError::Closed, "{policy:?}");
                    break;
                }
            }
        }
        assert!(!got.is_empty());
        assert_eq!(rx.pop(), Err(Closed));
        assert_eq!(
            rx.pop_timeout(Duration::from_millis(1)),
            Err(PopTimeoutError::Closed)
        );
    }
}

#[test]
fn mpsc_closes_only_when_the_last_clone_goes() {
    let (tx, mut rx) = mpsc::<u8>(4, RingConfig::default());
    let tx2 = tx.clone();
    drop(tx);
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    tx2.push(9).unwrap();
    drop(tx2);
    assert_eq!(rx.try_pop(), Ok(9));
    assert_eq!(rx.try_pop(), Err(TryPopError::Closed));
}

#[test]
fn pushing_after_the_consumer_is_gone_fails_fast_for_every_policy() {
    for policy in [
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Block { timeout: None },
        OverflowPolicy::Buffer { max_bytes: 1 << 20 },
    ] {
        // Both SPSC push paths: the general one (the default wait may park the consumer)
        // and the plain one (a BusySpin consumer never parks).
        for config in [cfg(policy), cfg(policy).wait(WaitStrategy::BusySpin)] {
            let (mut tx, rx) = spsc::<u8>(1, config);
            drop(rx);
            assert!(tx.is_closed());
            assert_eq!(tx.push(1), Err(PushError::Closed(1)), "{config:?}");
        }
        let (tx, rx) = mpsc::<u8>(1, cfg(policy));
        drop(rx);
        assert_eq!(tx.push(1), Err(PushError::Closed(1)), "{policy:?}");
    }
}

#[test]
fn pop_timeout_expires_and_a_parked_consumer_is_woken() {
    for wait in ALL_WAITS {
        let (mut tx, mut rx) = spsc::<u32>(8, RingConfig::default().wait(wait));
        let start = Instant::now();
        assert_eq!(
            rx.pop_timeout(Duration::from_millis(15)),
            Err(PopTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(15));
        let consumer = thread::spawn(move || rx.pop_timeout(Duration::from_secs(10)));
        thread::sleep(Duration::from_millis(20));
        tx.push(7).unwrap();
        assert_eq!(consumer.join().unwrap(), Ok(7), "{wait:?}");
    }
}

#[test]
fn batch_push_and_pop_move_runs_in_order() {
    let (mut tx, mut rx) = spsc::<u32>(5, RingConfig::default());
    let r = tx.push_batch(0..8);
    assert_eq!(r.pushed, 5);
    assert_eq!(r.error, Some(PushError::Full(5)));
    let mut got = Vec::new();
    assert_eq!(rx.pop_batch(3, |v| got.push(v)), 3);
    assert_eq!(tx.push_batch(10..13).pushed, 3);
    assert_eq!(rx.pop_into(&mut got, 100), 5);
    assert_eq!(got, [0, 1, 2, 3, 4, 10, 11, 12]);
    assert_eq!(rx.pop_batch(10, |_| panic!("empty")), 0);

    let (tx, mut rx) = mpsc::<u32>(3, cfg(OverflowPolicy::DropOldest));
    assert_eq!(tx.push_batch(0..10).pushed, 10);
    let mut got = Vec::new();
    rx.pop_into(&mut got, 10);
    assert_eq!(got, [7, 8, 9]);
}

#[test]
fn batch_pop_serves_overflow_before_the_ring() {
    let (mut tx, mut rx) = spsc::<u64>(2, cfg(OverflowPolicy::Buffer { max_bytes: 1024 }));
    assert_eq!(tx.push_batch(0..6).pushed, 6);
    let mut got = Vec::new();
    rx.pop_into(&mut got, 3);
    tx.push(6).unwrap();
    rx.pop_into(&mut got, 100);
    assert_eq!(got, (0..7).collect::<Vec<_>>());
}

#[test]
fn unpopped_items_are_dropped_with_the_ring() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl ItemSize for Counted {}
    let drops = Arc::new(AtomicUsize::new(0));
    for policy in [
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Buffer { max_bytes: 1 << 10 },
    ] {
        drops.store(0, Ordering::SeqCst);
        let (mut tx, rx) = spsc::<Counted>(3, cfg(policy));
        for _ in 0..5 {
            let _ = tx.push(Counted(drops.clone()));
        }
        drop((tx, rx));
        assert_eq!(drops.load(Ordering::SeqCst), 5, "{policy:?}");
    }
}

#[test]
#[should_panic(expected = "capacity of at least 1")]
fn zero_capacity_is_refused() {
    let _ = spsc::<u8>(0, RingConfig::default());
}

/// What is left in a ring whose head has wrapped past the end of the slots is dropped
/// from the right slots: the SPSC core finds the head's slot from its running count.
#[test]
fn unpopped_items_after_a_wrap_are_dropped_once_each() {
    use std::sync::{Arc, Mutex};
    struct Tagged(u32, Arc<Mutex<Vec<u32>>>);
    impl Drop for Tagged {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(self.0);
        }
    }
    impl ItemSize for Tagged {}
    for wait in [WaitStrategy::BusySpin, WaitStrategy::default()] {
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let config = RingConfig::with_policy(OverflowPolicy::DropNewest).wait(wait);
        let (mut tx, mut rx) = spsc::<Tagged>(3, config);
        for i in 0..5 {
            assert!(tx.push(Tagged(i, dropped.clone())).is_ok());
            if i < 4 {
                assert_eq!(rx.try_pop().ok().map(|t| t.0), Some(i));
            }
        }
        // Head at 4 (slot 1), tail at 5: one item left; then two more wrap the tail.
        for i in 5..7 {
            assert!(tx.push(Tagged(i, dropped.clone())).is_ok());
        }
        dropped.lock().unwrap().clear();
        drop((tx, rx));
        let mut left = dropped.lock().unwrap().clone();
        left.sort();
        assert_eq!(left, [4, 5, 6], "{wait:?}");
    }
}

/// Pops by reference: every item is shown once, in order, then dropped in its slot, on
/// each core and policy (stamped with and without eviction, published, fast, the overflow
/// queue).
#[test]
fn pop_batch_ref_shows_each_item_once_in_order_and_drops_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    struct Counted(u32, Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl ItemSize for Counted {
        fn item_size(&self) -> usize {
            8
        }
    }
    let policies = [
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Buffer { max_bytes: 1 << 10 },
    ];
    let shapes = [None, Some(MpscCore::Stamped), Some(MpscCore::Published)];
    for policy in policies {
        for shape in shapes {
            let drops = Arc::new(AtomicUsize::new(0));
            let (mut push, mut rx): (Box<dyn FnMut(Counted) -> bool>, Consumer<Counted>) =
                if let Some(core) = shape {
                    let (tx, rx) = mpsc::<Counted>(4, cfg(policy).mpsc_core(core));
                    (Box::new(move |c| tx.push(c).is_ok()), rx)
                } else {
                    let (mut tx, rx) = spsc::<Counted>(4, cfg(policy));
                    (Box::new(move |c| tx.push(c).is_ok()), rx)
                };
            // Six into four slots: DropNewest refuses two, DropOldest evicts two, Buffer
            // holds two beside the ring; then a wrap-around with a partial batch.
            let accepted = (0..6).filter(|&i| push(Counted(i, drops.clone()))).count();
            let mut seen = Vec::new();
            let mut total = 0;
            loop {
                let n = rx.pop_batch_ref(3, |c| seen.push(c.0));
                total += n;
                if n == 0 {
                    break;
                }
            }
            for i in 6..9 {
                assert!(push(Counted(i, drops.clone())), "{policy:?}");
            }
            total += rx.pop_batch_ref(2, |c| seen.push(c.0));
            total += rx.pop_batch_ref(8, |c| seen.push(c.0));
            let expected: Vec<u32> = match policy {
                OverflowPolicy::DropNewest => vec![0, 1, 2, 3, 6, 7, 8],
                OverflowPolicy::DropOldest => vec![2, 3, 4, 5, 6, 7, 8],
                _ => (0..9).collect(),
            };
            assert_eq!(seen, expected, "{policy:?} {shape:?}");
            assert_eq!(total, seen.len());
            // Popped, evicted and refused items are all dropped, each once.
            assert_eq!(drops.load(Ordering::SeqCst), 9, "{policy:?} {shape:?}");
            assert_eq!(
                accepted,
                if policy == OverflowPolicy::DropNewest {
                    4
                } else {
                    6
                }
            );
            let s = rx.stats();
            assert_eq!(s.popped, seen.len() as u64, "{policy:?} {shape:?}");
            assert_eq!(s.len, 0);
        }
    }
}

/// A panic while an item is shown frees its slot (the item leaks): the ring goes on.
#[test]
fn pop_batch_ref_survives_a_panicking_reader() {
    for core in [MpscCore::Stamped, MpscCore::Published] {
        pop_by_reference_after_a_panic(core);
    }
}

fn pop_by_reference_after_a_panic(core: MpscCore) {
    let (tx, mut rx) = mpsc::<u64>(2, cfg(OverflowPolicy::DropNewest).mpsc_core(core));
    for round in 0..3u64 {
        tx.push(round * 2).unwrap();
        tx.push(round * 2 + 1).unwrap();
        let shown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rx.pop_batch_ref(2, |v| {
                if *v % 2 == 0 {
                    panic!("reader failed");
                }
            })
        }));
        assert!(shown.is_err());
        // The panicking item is gone; the next one is still there, and both slots are
        // free again for the next round.
        let mut rest = Vec::new();
        rx.pop_batch_ref(4, |v| rest.push(*v));
        assert_eq!(rest, vec![round * 2 + 1], "{core:?}");
    }
}
