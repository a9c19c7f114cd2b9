//! `volley pub` and `volley sub`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use volley::proto::mcast::LossConfig;

use crate::messages::{frames_line, print_messages, seconds, send_payloads};
use volley::socket::{
    Endpoint, Message, MulticastReceiverStats, MulticastSenderStats, Publisher, SocketOptions,
    Subscriber,
};

/// Options of `volley pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Where to publish: tcp://HOST:PORT, tcp://*:PORT, ipc://PATH, or a multicast group
    /// udp://GROUP:PORT?iface=ADDR&ttl=N (joined, whether --bind or --connect).
    endpoint: String,
    /// Listen on the endpoint (the default for pub).
    #[arg(long, conflicts_with = "connect")]
    bind: bool,
    /// Connect to a subscriber that listens on the endpoint.
    #[arg(long)]
    connect: bool,
    /// Topic (first frame) of every message.
    #[arg(long, default_value = "")]
    topic: String,
    /// Send this many generated messages instead of reading lines from stdin.
    #[arg(long)]
    count: Option<u64>,
    /// Payload size in bytes of generated messages (the sequence number, padded).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Wait for this many subscribers before the first message (slow joiners miss
    /// what is sent before their subscription arrives).
    #[arg(long, default_value_t = 1)]
    wait_subscribers: usize,
    /// How long to wait for them, in seconds, before sending anyway.
    #[arg(long, default_value_t = 10.0)]
    wait_timeout: f64,
    /// udp://: keep a retransmit buffer and answer NAKs (subscribers need --reliable too).
    #[arg(long)]
    reliable: bool,
    /// udp://: stay this many seconds after the last message, sending heartbeats (so
    /// subscribers learn of a lost tail) and answering NAKs.
    #[arg(long, default_value_t = 0.5)]
    drain: f64,
}

/// Options of `volley sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Where to subscribe: tcp://HOST:PORT, ipc://PATH, or a multicast group
    /// udp://GROUP:PORT?iface=ADDR (joined, whether --bind or --connect).
    endpoint: String,
    /// Listen on the endpoint for publishers that connect.
    #[arg(long, conflicts_with = "connect")]
    bind: bool,
    /// Connect to a publisher (the default for sub).
    #[arg(long)]
    connect: bool,
    /// Topic prefix to subscribe to; repeat for several (default: everything).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Give up after this many seconds without a message.
    #[arg(long)]
    timeout: Option<f64>,
    /// Print payloads as hex instead of lossy UTF-8.
    #[arg(long)]
    hex: bool,
    /// udp://: NAK missing datagrams of reliable publishers and deliver in order.
    #[arg(long)]
    reliable: bool,
    /// udp://: drop this fraction (0..1) of received datagrams on purpose, before the
    /// protocol sees them (the loss generator, for tests and demos).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// udp://: seed of the loss generator (same seed, same drops).
    #[arg(long, default_value_t = 1)]
    loss_seed: u64,
    /// Print nothing per message (the summary on stderr still comes).
    #[arg(long)]
    quiet: bool,
}

fn is_multicast(endpoint: &str) -> bool {
    matches!(endpoint.parse::<Endpoint>(), Ok(Endpoint::Udp(_)))
}

/// The `--reliable` / `--loss` flags as socket options.
fn multicast_options(
    multicast: bool,
    reliable: bool,
    loss: f64,
    seed: u64,
) -> Result<SocketOptions, String> {
    if !(0.0..1.0).contains(&loss) {
        return Err("--loss must be at least 0 and below 1".into());
    }
    let mut options = SocketOptions::default();
    if multicast {
        // No flow control on a group: a burst arrives as fast as the publisher sends it.
        options.queue_capacity = 100_000;
    }
    if reliable {
        options.multicast = options.multicast.reliable();
    }
    options.multicast.loss = LossConfig::drop_rate(loss, seed);
    Ok(options)
}

/// One summary line per multicast group: what the protocol sent.
fn print_sender_stats(stats: &[MulticastSenderStats]) {
    for g in stats {
        let p = &g.protocol;
        eprintln!(
            "volley pub: {}: messages {} datagrams {} retransmits {} naks-received {} \
             heartbeats {} send-errors {}",
            g.endpoint,
            p.messages,
            p.datagrams,
            p.retransmits,
            p.naks_received,
            p.heartbeats,
            g.send_errors
        );
    }
}

/// One summary line per publisher heard, and one per group: delivered + lost is every
/// message the publisher sent since this subscriber joined.
fn print_receiver_stats(stats: &[MulticastReceiverStats]) {
    for g in stats {
        for (id, p) in g.protocol.publishers.iter().chain(&g.protocol.retired) {
            eprintln!(
                "volley sub: {} publisher {id}: delivered {} lost {} (unrecoverable \
                 datagrams {}) naks-sent {} naks-suppressed {} retransmits-received {} \
                 duplicates {}",
                g.endpoint,
                p.delivered_messages,
                p.lost_messages,
                p.unrecoverable_datagrams,
                p.naks_sent,
                p.naks_suppressed,
                p.retransmits_received,
                p.duplicate_datagrams
            );
        }
        let injected = g.loss.as_ref().map_or(0, |l| l.dropped);
        eprintln!(
            "volley sub: {}: publishers {} filtered {} garbage {} kernel-drops {} \
             injected-drops {}",
            g.endpoint,
            g.protocol.publishers.len() + g.protocol.retired.len(),
            g.filtered,
            g.protocol.garbage_datagrams,
            g.kernel_drops,
            injected
        );
    }
}

pub fn publish(args: &PubArgs) -> Result<(), String> {
    let multicast = is_multicast(&args.endpoint);
    let options = multicast_options(multicast, args.reliable, 0.0, 1)?;
    let context = volley::io::Context::global().map_err(|e| e.to_string())?;
    let mut publisher = Publisher::with_options(context, options).map_err(|e| e.to_string())?;
    if args.connect {
        publisher
            .connect(&args.endpoint)
            .map_err(|e| e.to_string())?;
    } else {
        let bound = publisher.bind(&args.endpoint).map_err(|e| e.to_string())?;
        eprintln!("volley pub: bound {bound}");
    }
    // A multicast group has no handshake: there is nobody to wait for.
    if args.wait_subscribers > 0
        && !multicast
        && !publisher.wait_for_subscribers(
            args.wait_subscribers,
            seconds(args.wait_timeout, "--wait-timeout")?,
        )
    {
        eprintln!(
            "volley pub: fewer than {} subscribers after {}s; sending anyway",
            args.wait_subscribers, args.wait_timeout
        );
    }
    let topic = Bytes::from(args.topic.clone());
    let start = Instant::now();
    let sent = send_payloads(args.count, args.size, args.rate, |payload| {
        publisher
            .send(Message::with_topic(topic.clone(), payload))
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    let flushed = publisher.flush(Duration::from_secs(10));
    if multicast {
        std::thread::sleep(seconds(args.drain, "--drain")?);
    }
    let s = publisher.stats();
    eprintln!(
        "volley pub: {sent} sent in {:.3}s, {} delivered to peers, {} dropped by the queue policy{}",
        start.elapsed().as_secs_f64(),
        s.messages_out,
        s.dropped,
        if flushed { "" } else { ", some still unsent after 10s" }
    );
    print_sender_stats(&publisher.multicast_stats());
    Ok(())
}

pub fn subscribe(args: &SubArgs) -> Result<(), String> {
    let options = multicast_options(
        is_multicast(&args.endpoint),
        args.reliable,
        args.loss,
        args.loss_seed,
    )?;
    let context = volley::io::Context::global().map_err(|e| e.to_string())?;
    let mut sub = Subscriber::with_options(context, options).map_err(|e| e.to_string())?;
    if args.bind {
        let bound = sub.bind(&args.endpoint).map_err(|e| e.to_string())?;
        eprintln!("volley sub: bound {bound}");
    } else {
        sub.connect(&args.endpoint).map_err(|e| e.to_string())?;
    }
    if args.topics.is_empty() {
        sub.subscribe(b"").map_err(|e| e.to_string())?;
    }
    for t in &args.topics {
        sub.subscribe(t.as_bytes()).map_err(|e| e.to_string())?;
    }
    let timeout = args.timeout.map(|t| seconds(t, "--timeout")).transpose()?;
    let received = print_messages(
        args.count,
        timeout,
        args.quiet,
        |t| match t {
            Some(t) => sub.recv_timeout(t),
            None => sub.recv().map(Some),
        },
        |m| {
            // The topic is always text; the payload frames follow as asked.
            let mut line = String::from_utf8_lossy(m.topic()).into_owned();
            if m.frames().len() > 1 {
                line.push('\t');
                line.push_str(&frames_line(&m.frames()[1..], args.hex));
            }
            line
        },
    );
    // Drops are reported however the receiving ended (a timeout too).
    let s = sub.stats();
    if s.dropped > 0 {
        eprintln!(
            "volley sub: {} messages dropped by the queue policy",
            s.dropped
        );
    }
    let received = match received {
        Ok(n) => n,
        Err(e) => {
            print_receiver_stats(&sub.multicast_stats());
            return Err(e);
        }
    };
    eprintln!("volley sub: {received} received");
    print_receiver_stats(&sub.multicast_stats());
    Ok(())
}
