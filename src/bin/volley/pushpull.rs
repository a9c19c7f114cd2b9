//! `volley push` and `volley pull`.

use std::time::{Duration, Instant};

use clap::Args;
use volley::ring::OverflowPolicy;
use volley::socket::{Message, Puller, Pusher, SocketOptions};

use crate::messages::{frames_line, print_messages, seconds, send_payloads};

/// Options of `volley push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Where to push: tcp://HOST:PORT, tcp://*:PORT or ipc://PATH.
    endpoint: String,
    /// Listen on the endpoint for pullers (the default for push).
    #[arg(long, conflicts_with = "connect")]
    bind: bool,
    /// Connect to a puller that listens on the endpoint.
    #[arg(long)]
    connect: bool,
    /// Send this many generated one-frame messages instead of reading lines from stdin.
    #[arg(long)]
    count: Option<u64>,
    /// Payload size in bytes of generated messages (the sequence number, padded).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Wait for this many pullers before the first message (messages sent before a
    /// puller connects go to the others).
    #[arg(long, default_value_t = 1)]
    wait_peers: usize,
    /// How long to wait for them, in seconds, before sending anyway.
    #[arg(long, default_value_t = 10.0)]
    wait_timeout: f64,
    /// Drop a message when every puller is full (or none is connected) instead of
    /// waiting for room, which is the default here, as at libzmq's PUSH.
    #[arg(long)]
    drop: bool,
}

/// Options of `volley pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Where to pull from: tcp://HOST:PORT or ipc://PATH.
    endpoint: String,
    /// Listen on the endpoint for pushers that connect.
    #[arg(long, conflicts_with = "connect")]
    bind: bool,
    /// Connect to a pusher (the default for pull).
    #[arg(long)]
    connect: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Give up after this many seconds without a message.
    #[arg(long)]
    timeout: Option<f64>,
    /// Print frames as hex instead of lossy UTF-8.
    #[arg(long)]
    hex: bool,
    /// Print nothing per message (the summary on stderr still comes).
    #[arg(long)]
    quiet: bool,
    /// Drop (and count) what arrives while the queue is full, instead of holding the
    /// pushers back until this side has printed its way through it, which is the
    /// default here, as at libzmq's PULL.
    #[arg(long)]
    drop: bool,
}

pub fn push(args: &PushArgs) -> Result<(), String> {
    let mut options = SocketOptions::default();
    if !args.drop {
        options.policy = OverflowPolicy::Block { timeout: None };
    }
    let context = volley::io::Context::global().map_err(|e| e.to_string())?;
    let mut pusher = Pusher::with_options(context, options).map_err(|e| e.to_string())?;
    if args.connect {
        pusher.connect(&args.endpoint).map_err(|e| e.to_string())?;
    } else {
        let bound = pusher.bind(&args.endpoint).map_err(|e| e.to_string())?;
        eprintln!("volley push: bound {bound}");
    }
    if args.wait_peers > 0
        && !pusher.wait_for_peers(
            args.wait_peers,
            seconds(args.wait_timeout, "--wait-timeout")?,
        )
    {
        eprintln!(
            "volley push: fewer than {} pullers after {}s; sending anyway",
            args.wait_peers, args.wait_timeout
        );
    }
    let start = Instant::now();
    let sent = send_payloads(args.count, args.size, args.rate, |payload| {
        pusher
            .send(Message::new(vec![payload]))
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    let flushed = pusher.flush(Duration::from_secs(10));
    let s = pusher.stats();
    eprintln!(
        "volley push: {sent} sent in {:.3}s, {} delivered to peers, {} dropped{}",
        start.elapsed().as_secs_f64(),
        s.messages_out,
        s.dropped,
        if flushed {
            ""
        } else {
            ", some still unsent after 10s"
        }
    );
    Ok(())
}

pub fn pull(args: &PullArgs) -> Result<(), String> {
    let context = volley::io::Context::global().map_err(|e| e.to_string())?;
    let mut options = SocketOptions::default();
    if !args.drop {
        options.policy = OverflowPolicy::Block { timeout: None };
    }
    let mut puller = Puller::with_options(context, options).map_err(|e| e.to_string())?;
    if args.bind {
        let bound = puller.bind(&args.endpoint).map_err(|e| e.to_string())?;
        eprintln!("volley pull: bound {bound}");
    } else {
        puller.connect(&args.endpoint).map_err(|e| e.to_string())?;
    }
    let timeout = args.timeout.map(|t| seconds(t, "--timeout")).transpose()?;
    let received = print_messages(
        args.count,
        timeout,
        args.quiet,
        |t| match t {
            Some(t) => puller.recv_timeout(t),
            None => puller.recv().map(Some),
        },
        |m| frames_line(m.frames(), args.hex),
    );
    // Drops are reported however the receiving ended (a timeout too).
    let s = puller.stats();
    if s.dropped > 0 {
        eprintln!(
            "volley pull: {} messages dropped by the queue policy",
            s.dropped
        );
    }
    let received = received?;
    eprintln!("volley pull: {received} received");
    Ok(())
}
