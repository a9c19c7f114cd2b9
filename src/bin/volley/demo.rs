//! `volley demo`: each capability run on this machine, its counters printed and checked.
//! A demo that shows a count that does not add up exits non-zero.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use volley::io::Context;
use volley::ring::{mpsc, spsc, OverflowPolicy, RingConfig, RingStats};
use volley::socket::{Message, Publisher, SocketOptions, Subscriber};

/// Options of `volley demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Items each producer pushes in the ring part.
    #[arg(long, default_value_t = 200_000)]
    items: u64,
    /// Messages the publisher sends in the TCP part.
    #[arg(long, default_value_t = 30_000)]
    messages: u64,
}

pub fn run(args: &DemoArgs) -> Result<(), String> {
    println!("volley demo: everything runs in this process, on this machine\n");
    rings(args.items)?;
    tcp(args.messages)?;
    crate::mcast::demo()?;
    crate::statsd::demo()?;
    crate::webhook::demo()?;
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

/// A publisher on loopback TCP, two subscribers with different prefixes, and a slow one
/// whose small queue drops (counted): what each received must match what was sent to it.
fn tcp(messages: u64) -> Result<(), String> {
    println!("\n== tcp pub/sub (ZMTP 3.1) on loopback: {messages} messages over topics cpu.*, mem.*, disk.*");
    let err = |e: volley::socket::Error| e.to_string();
    let ctx = Context::new().map_err(|e| e.to_string())?;
    let mut publisher = Publisher::with_options(&ctx, SocketOptions::default()).map_err(err)?;
    let endpoint = publisher
        .bind("tcp://127.0.0.1:0")
        .map_err(err)?
        .to_string();
    let subscriber = |prefix: &str, options: SocketOptions| -> Result<Subscriber, String> {
        let mut s = Subscriber::with_options(&ctx, options).map_err(err)?;
        s.connect(&endpoint).map_err(err)?;
        s.subscribe(prefix).map_err(err)?;
        Ok(s)
    };
    let mut cpu = subscriber("cpu.", SocketOptions::default())?;
    let mut mem = subscriber("mem.", SocketOptions::default())?;
    let slow_options = SocketOptions {
        queue_capacity: 64,
        policy: OverflowPolicy::DropOldest,
        ..SocketOptions::default()
    };
    let mut slow = subscriber("", slow_options)?;
    if !publisher.wait_for_subscribers(3, Duration::from_secs(10)) {
        return Err("subscribers did not connect within 10 s".into());
    }
    println!(
        "publisher bound {endpoint}; 3 subscribers: cpu.*, mem.*, and a slow one on everything"
    );

    let topics = ["cpu.load", "mem.free", "disk.io"];
    let start = Instant::now();
    // What each topic is sent: message i goes out on topic i % 3.
    let sent_per_topic: [u64; 3] = std::array::from_fn(|t| (messages + 2 - t as u64) / 3);
    let publisher_done = AtomicBool::new(false);
    // A reader stops once what it received and what its queue dropped make up what it
    // was sent. Only what the publisher dropped (counted there) can keep that from
    // happening: after the publisher is done, five quiet seconds end the wait. A reader
    // that stopped at a fixed silence instead missed the rest of the stream on a host
    // that starved the I/O thread for longer than that.
    let drain = |s: &mut Subscriber, slow: bool, expected: u64| {
        let mut n = 0u64;
        let mut last = Instant::now();
        loop {
            match s.recv_timeout(Duration::from_millis(50)) {
                Ok(Some(_)) => {
                    n += 1;
                    last = Instant::now();
                    if slow {
                        thread::sleep(Duration::from_micros(50));
                    }
                }
                Ok(None) => {
                    let quiet = last.elapsed() > Duration::from_secs(5);
                    if n + s.stats().dropped >= expected
                        || (publisher_done.load(Ordering::Acquire) && quiet)
                    {
                        return n;
                    }
                }
                Err(_) => return n,
            }
        }
    };
    let (cpu_got, mem_got, slow_got) = thread::scope(|scope| {
        let c = scope.spawn(|| drain(&mut cpu, false, sent_per_topic[0]));
        let m = scope.spawn(|| drain(&mut mem, false, sent_per_topic[1]));
        let s = scope.spawn(|| drain(&mut slow, true, messages));
        for i in 0..messages {
            let t = (i % 3) as usize;
            let payload = format!("{i}");
            // Pace to ~300k msgs/s so the demo shows policy drops only where the
            // slow subscriber is, not in the fast ones' socket buffers.
            if i % 1000 == 999 {
                thread::sleep(Duration::from_millis(3));
            }
            if let Err(e) = publisher.send(Message::from_parts([topics[t].to_string(), payload])) {
                return Err(e.to_string());
            }
        }
        publisher.flush(Duration::from_secs(10));
        publisher_done.store(true, Ordering::Release);
        Ok((
            c.join().unwrap_or(0),
            m.join().unwrap_or(0),
            s.join().unwrap_or(0),
        ))
    })?;
    let elapsed = start.elapsed();
    let pub_stats = publisher.stats();
    let slow_stats = slow.stats();
    println!(
        "{:<22} {:>9} {:>9} {:>9}",
        "subscriber", "sent-to", "received", "dropped"
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9}",
        "cpu.* ",
        sent_per_topic[0],
        cpu_got,
        cpu.stats().dropped
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9}",
        "mem.*",
        sent_per_topic[1],
        mem_got,
        mem.stats().dropped
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9}",
        "slow, all (DropOldest)", messages, slow_got, slow_stats.dropped
    );
    println!(
        "publisher: {} messages out in {:.1} ms, {} dropped at the publisher",
        pub_stats.messages_out,
        elapsed.as_secs_f64() * 1e3,
        pub_stats.dropped
    );
    // Every copy the publisher addressed is delivered or counted as dropped somewhere.
    let addressed = sent_per_topic[0] + sent_per_topic[1] + messages;
    let accounted = cpu_got
        + cpu.stats().dropped
        + mem_got
        + mem.stats().dropped
        + slow_got
        + slow_stats.dropped
        + pub_stats.dropped;
    if accounted != addressed || cpu_got > sent_per_topic[0] || mem_got > sent_per_topic[1] {
        return Err(format!(
            "tcp demo: counts do not add up (publisher {pub_stats:?}, slow {slow_stats:?})"
        ));
    }
    println!(
        "checked: subscribers got only their prefixes; every copy is delivered or counted as dropped"
    );
    Ok(())
}
