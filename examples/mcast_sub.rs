//! cargo run --example mcast_sub [-- --reliable --loss 0.05 --expect 100 ENDPOINT]
//!
//! Joins a multicast group and prints every message it receives, the loss counters once
//! a second, and a summary per publisher at the end. Run `cargo run --example mcast_pub`
//! in another terminal to feed it.
//!
//! `--loss RATE` turns on volley's loss generator in the receive path (datagrams dropped
//! on purpose, before the protocol sees them): in best-effort mode the summary counts
//! every lost message exactly; with `--reliable` on both sides the losses are repaired
//! by NAKs and retransmissions. `--expect N` makes this a check: it exits once every
//! publisher's stream is accounted for, and fails unless, for each publisher,
//! delivered + lost == N (a subscriber that joined late counts from where it joined,
//! which the summary says).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use volley::io::Context;
use volley::proto::mcast::{LossConfig, PublisherId, PublisherStats};
use volley::socket::{Message, RecvMode, SocketOptions, Subscriber};

/// The group both examples use unless told otherwise.
const DEFAULT_ENDPOINT: &str = "udp://239.255.0.77:7777?iface=127.0.0.1";

/// Receive and count the messages of a multicast group.
#[derive(Debug, Parser)]
struct Args {
    /// The group: udp://GROUP:PORT?iface=ADDR.
    #[arg(default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// Topic prefix to subscribe to (default: everything).
    #[arg(long, default_value = "")]
    topic: String,
    /// NAK what is missing and deliver in order (the publisher needs --reliable too).
    #[arg(long)]
    reliable: bool,
    /// Drop this fraction of received datagrams on purpose (the loss generator).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Seed of the loss generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Check that every publisher's delivered + lost reaches exactly this many messages,
    /// and exit when it does.
    #[arg(long)]
    expect: Option<u64>,
    /// Exit after this many seconds without a message, once one has arrived.
    #[arg(long, default_value_t = 3.0)]
    idle: f64,
    /// Spin on the socket instead of sleeping (lower latency, a busy core).
    #[arg(long)]
    busy_poll: bool,
    /// Print only the counters.
    #[arg(long)]
    quiet: bool,
}

fn publishers(sub: &Subscriber) -> Vec<(PublisherId, PublisherStats)> {
    let mut all = Vec::new();
    for group in sub.multicast_stats() {
        all.extend(group.protocol.publishers);
        all.extend(group.protocol.retired);
    }
    all
}

/// Messages of a publisher's stream accounted for: delivered or counted lost, from the
/// start of the stream (whatever came before the join is neither).
fn accounted(p: &PublisherStats) -> u64 {
    p.joined_at_msg + p.delivered_messages + p.lost_messages
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mcast_sub: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !(0.0..1.0).contains(&args.loss) {
        return Err("--loss must be at least 0 and below 1".into());
    }
    let mut options = SocketOptions {
        queue_capacity: 100_000,
        ..SocketOptions::default()
    };
    if args.reliable {
        options.multicast = options.multicast.reliable();
    }
    if args.busy_poll {
        options.recv_mode = RecvMode::BusyPoll;
    }
    // The loss generator is part of the public options: any program can switch it on.
    options.multicast.loss = LossConfig::drop_rate(args.loss, args.seed);
    let mut sub = Subscriber::with_options(Context::global()?, options)?;
    let joined = sub.bind(&args.endpoint)?;
    sub.subscribe(args.topic.as_bytes())?;
    println!(
        "mcast_sub: joined {joined} ({}, injected loss {:.1}%), waiting for publishers",
        if args.reliable {
            "reliable"
        } else {
            "best effort"
        },
        args.loss * 100.0
    );
    let idle = Duration::try_from_secs_f64(args.idle).map_err(|_| "--idle: bad duration")?;
    let mut received = 0u64;
    let mut last_message: Option<Instant> = None;
    let mut next_report = Instant::now() + Duration::from_secs(1);
    let print = |m: &Message| {
        if !args.quiet {
            let payload: Vec<String> = m.frames()[1..]
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            println!(
                "received {} {}",
                String::from_utf8_lossy(m.topic()),
                payload.join(" ")
            );
        }
    };
    loop {
        if let Some(m) = sub.recv_timeout(Duration::from_millis(100))? {
            received += 1;
            last_message = Some(Instant::now());
            print(&m);
        }
        let now = Instant::now();
        if now >= next_report {
            next_report = now + Duration::from_secs(1);
            for (id, p) in publishers(&sub) {
                println!(
                    "mcast_sub: {id}: delivered {} lost {} naks-sent {} retransmits-received {}",
                    p.delivered_messages, p.lost_messages, p.naks_sent, p.retransmits_received
                );
            }
        }
        if let Some(expect) = args.expect {
            let all = publishers(&sub);
            if !all.is_empty() && all.iter().all(|(_, p)| accounted(p) >= expect) {
                break;
            }
        }
        if last_message.is_some_and(|t| now.duration_since(t) >= idle) {
            break;
        }
    }
    // What the protocol delivered before the loop ended may still wait in the queue.
    while let Some(m) = sub.try_recv()? {
        received += 1;
        print(&m);
    }
    let all = publishers(&sub);
    let group = &sub.multicast_stats()[0];
    println!(
        "mcast_sub: received {received} messages from {} publisher(s); kernel drops {}, \
         injected drops {}, garbage datagrams {}",
        all.len(),
        group.kernel_drops,
        group.loss.as_ref().map_or(0, |l| l.dropped),
        group.protocol.garbage_datagrams
    );
    let mut ok = true;
    for (id, p) in &all {
        println!(
            "mcast_sub: {id}: delivered {} + lost {} = {} messages since joining at message {}; \
             {} datagrams lost ({} unrecoverable), {} NAKs sent, {} suppressed, {} \
             retransmissions received, {} duplicates",
            p.delivered_messages,
            p.lost_messages,
            p.delivered_messages + p.lost_messages,
            p.joined_at_msg,
            p.lost_datagrams,
            p.unrecoverable_datagrams,
            p.naks_sent,
            p.naks_suppressed,
            p.retransmits_received,
            p.duplicate_datagrams
        );
        if let Some(expect) = args.expect {
            if accounted(p) == expect {
                println!("mcast_sub: {id}: checked: delivered + lost == sent ({expect})");
            } else {
                println!(
                    "mcast_sub: {id}: FAILED: joined at {} + delivered {} + lost {} != sent {expect}",
                    p.joined_at_msg, p.delivered_messages, p.lost_messages
                );
                ok = false;
            }
        }
    }
    if args.expect.is_some() && all.is_empty() {
        println!("mcast_sub: FAILED: no publisher was heard");
        ok = false;
    }
    // Every message the protocol delivered reached this loop, unless the prefix filter
    // or a full queue (counted) took it.
    let delivered: u64 = all.iter().map(|(_, p)| p.delivered_messages).sum();
    let dropped = sub.stats().dropped;
    if received + dropped + group.filtered != delivered {
        println!(
            "mcast_sub: FAILED: received {received} + queue drops {dropped} + filtered {} \
             != delivered {delivered}",
            group.filtered
        );
        ok = false;
    }
    Ok(ok)
}
