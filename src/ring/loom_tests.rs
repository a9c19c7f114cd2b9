//! Model checks of the lock-free paths under every interleaving loom explores.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib ring::loom_tests`
//! (scripts/test.sh does, with a bounded number of preemptions). Capacities are 1 and 2
//! so that full, wrap-around and eviction are reached within a few steps.

use loom::thread;

use super::*;

fn cfg(policy: OverflowPolicy, wait: WaitStrategy) -> RingConfig {
    RingConfig::with_policy(policy).wait(wait)
}

/// Runs an mpsc model once per several-producer core (DropOldest rings are always stamped).
fn each_mpsc_core(model: impl Fn(MpscCore) + Sync + Send + Copy + 'static) {
    for core in [MpscCore::Stamped, MpscCore::Published] {
        loom::model(move || model(core));
    }
}

/// SPSC push/pop race across a wrap-around: what is popped is a prefix-ordered subset of
/// what was pushed, and the counters add up.
#[test]
fn spsc_push_pop_race() {
    loom::model(|| {
        let (mut tx, mut rx) =
            spsc::<u32>(2, cfg(OverflowPolicy::DropNewest, WaitStrategy::BusySpin));
        let producer = thread::spawn(move || {
            let mut accepted = Vec::new();
            for i in 0..3 {
                if tx.push(i).is_ok() {
                    accepted.push(i);
                }
            }
            accepted
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            if let Ok(v) = rx.try_pop() {
                got.push(v);
            }
        }
        let accepted = producer.join().unwrap();
        while let Ok(v) = rx.try_pop() {
            got.push(v);
        }
        assert_eq!(got, accepted);
        let s = rx.stats();
        assert_eq!(s.pushed, accepted.len() as u64);
        assert_eq!(s.popped, got.len() as u64);
        assert_eq!(s.dropped_newest, 3 - accepted.len() as u64);
    });
}

/// DropOldest eviction against a concurrent pop on a one-slot ring: every item is popped
/// or evicted exactly once, in order, and no slot is read while written (loom checks the
/// cell accesses).
#[test]
fn drop_oldest_eviction_vs_pop() {
    loom::model(|| {
        let (mut tx, mut rx) =
            spsc::<u32>(1, cfg(OverflowPolicy::DropOldest, WaitStrategy::BusySpin));
        let producer = thread::spawn(move || {
            for i in 0..3 {
                tx.push(i).unwrap();
            }
        });
        let mut got = Vec::new();
        for _ in 0..2 {
            if let Ok(v) = rx.try_pop() {
                got.push(v);
            }
        }
        producer.join().unwrap();
        while let Ok(v) = rx.try_pop() {
            got.push(v);
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert_eq!(got.last(), Some(&2), "the newest item always survives");
        let s = rx.stats();
        assert_eq!(s.pushed, 3);
        assert_eq!(s.popped, got.len() as u64);
        assert_eq!(s.popped + s.dropped_oldest, 3);
    });
}

/// Two producers racing for the tail of a one-slot MPSC ring that evicts.
#[test]
fn mpsc_two_producers_with_eviction() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::<u32>(1, cfg(OverflowPolicy::DropOldest, WaitStrategy::BusySpin));
        let tx2 = tx.clone();
        let a = thread::spawn(move || tx.push(1).unwrap());
        let b = thread::spawn(move || tx2.push(2).unwrap());
        let first = rx.try_pop().ok();
        a.join().unwrap();
        b.join().unwrap();
        let mut got: Vec<u32> = first.into_iter().collect();
        while let Ok(v) = rx.try_pop() {
            got.push(v);
        }
        let s = rx.stats();
        assert_eq!(s.pushed, 2);
        assert_eq!(s.popped + s.dropped_oldest, 2);
        assert_eq!(s.popped, got.len() as u64);
        assert!(!got.is_empty());
    });
}

/// A consumer parked in `pop` is woken by a push, and then by the close: no lost wake-up
/// (loom reports a deadlock if the consumer could sleep forever).
#[test]
fn parked_consumer_is_woken() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::<u32>(1, cfg(OverflowPolicy::DropNewest, WaitStrategy::Park));
        let producer = thread::spawn(move || {
            tx.push(7).unwrap();
        });
        assert_eq!(rx.pop(), Ok(7));
        assert_eq!(rx.pop(), Err(Closed));
        producer.join().unwrap();
    });
}

/// A producer parked under Block is woken when the consumer makes room.
#[test]
fn blocked_producer_is_woken() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::<u32>(
            1,
            cfg(OverflowPolicy::Block { timeout: None }, WaitStrategy::Park),
        );
        let producer = thread::spawn(move || {
            tx.push(1).unwrap();
            tx.push(2).unwrap();
        });
        assert_eq!(rx.pop(), Ok(1));
        assert_eq!(rx.pop(), Ok(2));
        producer.join().unwrap();
    });
}

/// A producer of an mpsc ring blocked for room (Block) is woken by the pop that makes it.
#[test]
fn mpsc_blocked_producer_is_woken() {
    each_mpsc_core(|core| {
        let config =
            cfg(OverflowPolicy::Block { timeout: None }, WaitStrategy::Park).mpsc_core(core);
        let (tx, mut rx) = mpsc::<u32>(1, config);
        let producer = thread::spawn(move || {
            tx.push(1).unwrap();
            tx.push(2).unwrap();
        });
        assert_eq!(rx.pop(), Ok(1));
        assert_eq!(rx.pop(), Ok(2));
        producer.join().unwrap();
    });
}

/// The mpsc consumer parked in `pop` sees items from either producer and then the close.
#[test]
fn mpsc_parked_consumer_sees_close() {
    each_mpsc_core(|core| {
        let config = cfg(OverflowPolicy::DropNewest, WaitStrategy::Park).mpsc_core(core);
        let (tx, mut rx) = mpsc::<u32>(2, config);
        let tx2 = tx.clone();
        let a = thread::spawn(move || tx.push(1).unwrap());
        let b = thread::spawn(move || drop(tx2));
        assert_eq!(rx.pop(), Ok(1));
        assert_eq!(rx.pop(), Err(Closed));
        a.join().unwrap();
        b.join().unwrap();
    });
}

/// The mpsc core hands a slot back to producers only after the consumer has read it:
/// the producer's next write into the one slot must happen-after that read.
#[test]
fn mpsc_slot_reuse_after_pop() {
    each_mpsc_core(|core| {
        let config = cfg(OverflowPolicy::DropNewest, WaitStrategy::BusySpin).mpsc_core(core);
        let (tx, mut rx) = mpsc::<u32>(1, config);
        let producer = thread::spawn(move || {
            for i in 0..2 {
                while tx.push(i).is_err() {
                    thread::yield_now();
                }
            }
        });
        for expect in 0..2 {
            loop {
                match rx.try_pop() {
                    Ok(v) => {
                        assert_eq!(v, expect);
                        break;
                    }
                    Err(_) => thread::yield_now(),
                }
            }
        }
        producer.join().unwrap();
    });
}

/// The by-reference pop against two producers on a one-slot ring: each accepted item is
/// shown exactly once and in each producer's order, and no slot is read while written.
#[test]
fn mpsc_pop_by_reference_race() {
    each_mpsc_core(|core| {
        let config = cfg(OverflowPolicy::DropNewest, WaitStrategy::BusySpin).mpsc_core(core);
        let (tx, mut rx) = mpsc::<u32>(1, config);
        let tx2 = tx.clone();
        let a = thread::spawn(move || (0..2).filter(|&i| tx.push(i).is_ok()).collect::<Vec<_>>());
        let b = thread::spawn(move || {
            (10..12)
                .filter(|&i| tx2.push(i).is_ok())
                .collect::<Vec<_>>()
        });
        let mut seen = Vec::new();
        for _ in 0..2 {
            rx.pop_batch_ref(1, |v| seen.push(*v));
        }
        let (from_a, from_b) = (a.join().unwrap(), b.join().unwrap());
        while rx.pop_batch_ref(1, |v| seen.push(*v)) > 0 {}
        let mut expected: Vec<u32> = from_a.iter().chain(&from_b).copied().collect();
        let mut got = seen.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        let order = |small: bool| -> Vec<u32> {
            seen.iter()
                .copied()
                .filter(|&v| (v < 10) == small)
                .collect()
        };
        assert_eq!(order(true), from_a);
        assert_eq!(order(false), from_b);
    });
}

/// The published core, two producers and a by-value pop on a one-slot ring: the producer
/// that reuses the slot may know it is free only from the head copy the other producer
/// stored, and that copy must carry the consumer's read of the slot with it.
#[test]
fn mpsc_head_copy_hand_over() {
    loom::model(|| {
        let config =
            cfg(OverflowPolicy::DropNewest, WaitStrategy::BusySpin).mpsc_core(MpscCore::Published);
        let (tx, mut rx) = mpsc::<u32>(1, config);
        let tx2 = tx.clone();
        let a = thread::spawn(move || (0..2).filter(|&i| tx.push(i).is_ok()).count());
        let b = thread::spawn(move || (10..11).filter(|&i| tx2.push(i).is_ok()).count());
        let mut seen = Vec::new();
        for _ in 0..2 {
            if let Ok(v) = rx.try_pop() {
                seen.push(v);
            }
        }
        let accepted = a.join().unwrap() + b.join().unwrap();
        while let Ok(v) = rx.try_pop() {
            seen.push(v);
        }
        assert_eq!(seen.len(), accepted);
        let stats = rx.stats();
        assert_eq!(stats.pushed, accepted as u64);
        assert_eq!(stats.pushed + stats.dropped_newest, 3);
    });
}

/// `ReadPause` as a receiving socket's I/O thread and receiver use it. The producer never
/// waits on the ring: it holds what does not fit and offers again only when kicked (a
/// condvar here, the I/O thread's waker in volley). Its first read (items 0 and 1) fits
/// a ring of two, so it is pushed without a pause; its second (item 2) may find the ring full
/// while the consumer is taking 0 and 1, which were pushed before this raise and so
/// carry no sight of it: the fences are all that make one side see the other. The
/// consumer blocks on the ring and kicks after a take that finds the pause raised and
/// the ring at most half full. A stranded pause (the producer waiting for a kick, the
/// consumer for an item) is a deadlock, which fails the model.
#[test]
fn read_pause_never_strands_held_items() {
    use crate::sync::{Arc, Condvar, Mutex};
    use std::collections::VecDeque;
    loom::model(|| {
        let (mut tx, mut rx) = spsc::<u32>(2, cfg(OverflowPolicy::DropNewest, WaitStrategy::Park));
        let pause = Arc::new(ReadPause::new());
        let kick = Arc::new((Mutex::new(false), Condvar::new()));
        let producer = {
            let (pause, kick) = (pause.clone(), kick.clone());
            thread::spawn(move || {
                for read in [0..2u32, 2..3] {
                    let mut held: VecDeque<u32> = read.collect();
                    let mut paused = false;
                    loop {
                        // As `SocketEntry::offer_held`: a read that fits needs no pause.
                        if !paused && 2 - tx.len() >= held.len() {
                            for item in held.drain(..) {
                                assert!(tx.push(item).is_ok(), "pushed into room it saw");
                            }
                            break;
                        }
                        paused = true;
                        pause.raise();
                        let room = 2 - tx.len();
                        for _ in 0..room.min(held.len()) {
                            let item = held.pop_front().expect("counted");
                            assert!(tx.push(item).is_ok(), "pushed into room it saw");
                        }
                        if held.is_empty() {
                            pause.lower();
                            break;
                        }
                        let (kicked, cv) = &*kick;
                        let mut k = kicked.lock().unwrap();
                        while !*k {
                            k = cv.wait(k).unwrap();
                        }
                        *k = false;
                    }
                }
            })
        };
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(
                rx.pop()
                    .expect("the producer is alive until it has pushed all"),
            );
            if pause.raised_after_take() && rx.len() <= 1 {
                let (kicked, cv) = &*kick;
                *kicked.lock().unwrap() = true;
                cv.notify_one();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
        assert!(!pause.is_raised());
    });
}
