//! `volley pub` and `volley sub`.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use volley::socket::{Message, Publisher, Subscriber};

/// Options of `volley pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Where to publish: tcp://HOST:PORT, tcp://*:PORT or ipc://PATH.
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
}

/// Options of `volley sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Where to subscribe: tcp://HOST:PORT or ipc://PATH.
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
}

fn seconds(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| format!("{what} must be a non-negative number of seconds"))
}

pub fn publish(args: &PubArgs) -> Result<(), String> {
    let mut publisher = Publisher::new().map_err(|e| e.to_string())?;
    if args.connect {
        publisher
            .connect(&args.endpoint)
            .map_err(|e| e.to_string())?;
    } else {
        let bound = publisher.bind(&args.endpoint).map_err(|e| e.to_string())?;
        eprintln!("volley pub: bound {bound}");
    }
    if args.wait_subscribers > 0
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
    let interval = if args.rate > 0.0 {
        Some(Duration::from_secs_f64(1.0 / args.rate))
    } else {
        None
    };
    let start = Instant::now();
    let mut sent = 0u64;
    let pace = |sent: u64| {
        if let Some(iv) = interval {
            let due = start + iv.mul_f64(sent as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    };
    match args.count {
        Some(count) => {
            for seq in 0..count {
                pace(seq);
                let mut payload = seq.to_string().into_bytes();
                payload.resize(args.size.max(payload.len()), b'.');
                publisher
                    .send(Message::new(vec![topic.clone(), Bytes::from(payload)]))
                    .map_err(|e| e.to_string())?;
                sent += 1;
            }
        }
        None => {
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(|e| format!("reading stdin: {e}"))?;
                pace(sent);
                publisher
                    .send(Message::new(vec![topic.clone(), Bytes::from(line)]))
                    .map_err(|e| e.to_string())?;
                sent += 1;
            }
        }
    }
    let flushed = publisher.flush(Duration::from_secs(10));
    let s = publisher.stats();
    eprintln!(
        "volley pub: {sent} sent in {:.3}s, {} delivered to peers, {} dropped by the queue policy{}",
        start.elapsed().as_secs_f64(),
        s.messages_out,
        s.dropped,
        if flushed { "" } else { ", some still unsent after 10s" }
    );
    Ok(())
}

pub fn subscribe(args: &SubArgs) -> Result<(), String> {
    let mut sub = Subscriber::new().map_err(|e| e.to_string())?;
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
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut received = 0u64;
    while args.count.is_none_or(|c| received < c) {
        let message = match timeout {
            Some(t) => match sub.recv_timeout(t).map_err(|e| e.to_string())? {
                Some(m) => m,
                None => {
                    if let Some(c) = args.count {
                        return Err(format!("timed out after {received} of {c} messages"));
                    }
                    break;
                }
            },
            None => sub.recv().map_err(|e| e.to_string())?,
        };
        let mut line = String::from_utf8_lossy(message.topic()).into_owned();
        for frame in message.frames().iter().skip(1) {
            line.push('\t');
            if args.hex {
                for b in frame.iter() {
                    line.push_str(&format!("{b:02x}"));
                }
            } else {
                line.push_str(&String::from_utf8_lossy(frame));
            }
        }
        if writeln!(out, "{line}").is_err() {
            break; // stdout closed (e.g. piped into head)
        }
        received += 1;
    }
    let _ = out.flush();
    let s = sub.stats();
    if s.dropped > 0 {
        eprintln!(
            "volley sub: {} messages dropped by the queue policy",
            s.dropped
        );
    }
    Ok(())
}
