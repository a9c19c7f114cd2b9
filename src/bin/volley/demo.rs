//! `volley demo`: each capability run on this machine, its counters printed and checked.
//! A demo that shows a count that does not add up exits non-zero.

use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use volley::ring::{mpsc, spsc, OverflowPolicy, RingConfig, RingStats};

/// Options of `volley demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Items each producer pushes in the ring part.
    #[arg(long, default_value_t = 200_000)]
    items: u64,
}

pub fn run(args: &DemoArgs) -> Result<(), String> {
    println!("volley demo: everything runs in this process, on this machine\n");
    rings(args.items)?;
    println!("\nall demo checks passed");
    Ok(())
}

fn policies() -> [(&'static str, OverflowPolicy); 4] {
    [
        ("DropNewest", OverflowPolicy::DropNewest),
        ("DropOldest", OverflowPolicy::DropOldest),
        (
            "Block(1ms)",
            OverflowPolicy::Block {
                timeout: Some(Duration::from_millis(1)),
            },
        ),
        (
            "Buffer(256K)",
            OverflowPolicy::Buffer {
                max_bytes: 256 << 10,
            },
        ),
    ]
}

/// A consumer slower than its producers: it pauses a little every 64 items, so every
/// policy has something to decide.
fn slow_consume(mut pop: impl FnMut() -> Option<u64>) -> u64 {
    let mut popped = 0;
    while pop().is_some() {
        popped += 1;
        if popped % 64 == 0 {
            let until = Instant::now() + Duration::from_micros(20);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
    popped
}

fn rings(items: u64) -> Result<(), String> {
    println!(
        "== rings: a fast producer, a slow consumer, capacity 1024, {items} items per producer"
    );
    println!(
        "{:<6} {:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "shape", "policy", "pushed", "popped", "drop-new", "drop-old", "timedout", "blocked", "ms"
    );
    for (name, policy) in policies() {
        let config = RingConfig::with_policy(policy);
        let start = Instant::now();
        let (mut tx, mut rx) = spsc::<u64>(1024, config);
        let producer =
            thread::spawn(move || (0..items).filter(|&i| tx.push(i).is_ok()).count() as u64);
        let popped = slow_consume(|| rx.pop().ok());
        let accepted = producer.join().map_err(|_| "producer panicked")?;
        report(
            "spsc",
            name,
            rx.stats(),
            start.elapsed(),
            items,
            accepted,
            popped,
        )?;

        let start = Instant::now();
        let (tx, mut rx) = mpsc::<u64>(1024, config);
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let tx = tx.clone();
                thread::spawn(move || (0..items).filter(|&i| tx.push(i).is_ok()).count() as u64)
            })
            .collect();
        drop(tx);
        let popped = slow_consume(|| rx.pop().ok());
        let mut accepted = 0;
        for p in producers {
            accepted += p.join().map_err(|_| "producer panicked")?;
        }
        report(
            "mpsc2",
            name,
            rx.stats(),
            start.elapsed(),
            2 * items,
            accepted,
            popped,
        )?;
    }
    println!("checked: pushed = popped + drop-old, and every push call is accounted for");
    Ok(())
}

fn report(
    shape: &str,
    policy: &str,
    s: RingStats,
    elapsed: Duration,
    calls: u64,
    accepted: u64,
    popped: u64,
) -> Result<(), String> {
    println!(
        "{:<6} {:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9.1}",
        shape,
        policy,
        s.pushed,
        s.popped,
        s.dropped_newest,
        s.dropped_oldest,
        s.timed_out,
        s.blocked,
        elapsed.as_secs_f64() * 1e3
    );
    let refused = s.dropped_newest + s.timed_out + s.rejected_closed;
    if s.pushed != accepted
        || s.popped != popped
        || s.pushed != s.popped + s.dropped_oldest
        || calls != s.pushed + refused
    {
        return Err(format!("{shape} {policy}: counts do not add up: {s:?}"));
    }
    Ok(())
}
