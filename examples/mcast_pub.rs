//! cargo run --example mcast_pub [-- --count 100 --rate 20 --reliable ENDPOINT]
//!
//! Publishes numbered messages on a multicast group, printing each one it sends and, at
//! the end, the protocol's counters (datagrams, retransmissions, NAKs answered). Start
//! `cargo run --example mcast_sub` in another terminal first: a subscriber that joins
//! later starts at the current position and hears nothing of what went before.
//!
//! The default group is on loopback (`iface=127.0.0.1`), so it works on any Linux host
//! without a network; for a LAN, give the interface's address instead (see the README's
//! multicast section for TTL, IGMP snooping, rp_filter and receive buffers).

use std::time::{Duration, Instant};

use clap::Parser;
use volley::io::Context;
use volley::socket::{Message, Publisher, SocketOptions};

/// The group both examples use unless told otherwise.
const DEFAULT_ENDPOINT: &str = "udp://239.255.0.77:7777?iface=127.0.0.1";

/// Publish numbered messages on a multicast group.
#[derive(Debug, Parser)]
struct Args {
    /// The group: udp://GROUP:PORT?iface=ADDR&ttl=N.
    #[arg(default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// Messages to send.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Keep a retransmit buffer and answer NAKs (run mcast_sub with --reliable too).
    #[arg(long)]
    reliable: bool,
    /// Topic of every message.
    #[arg(long, default_value = "demo.counter")]
    topic: String,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut options = SocketOptions::default();
    if args.reliable {
        options.multicast = options.multicast.reliable();
    }
    let mut publisher = Publisher::with_options(Context::global()?, options)?;
    let joined = publisher.bind(&args.endpoint)?;
    println!(
        "mcast_pub: joined {joined} ({}), sending {} messages on {:?}",
        if args.reliable {
            "reliable"
        } else {
            "best effort"
        },
        args.count,
        args.topic
    );
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let start = Instant::now();
    for seq in 0..args.count {
        if let Some(interval) = interval {
            let due = start + interval.mul_f64(seq as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let payload = format!("{seq}");
        publisher.send(Message::from_parts([args.topic.clone(), payload.clone()]))?;
        if !args.quiet {
            println!("sent {} {payload}", args.topic);
        }
    }
    publisher.flush(Duration::from_secs(5));
    // Stay a little: the heartbeats that follow the last message tell subscribers where
    // the stream ends (so a lost tail is counted), and NAKs for it get answered.
    std::thread::sleep(Duration::from_secs(1));
    for group in publisher.multicast_stats() {
        let p = &group.protocol;
        println!(
            "mcast_pub: sent {} messages in {} datagrams ({} bytes of messages) in {:.2}s; \
             retransmitted {} datagrams for {} NAKs; {} heartbeats; {} send errors",
            p.messages,
            p.datagrams,
            p.message_bytes,
            start.elapsed().as_secs_f64(),
            p.retransmits,
            p.naks_received,
            p.heartbeats,
            group.send_errors
        );
    }
    Ok(())
}
