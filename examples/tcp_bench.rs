//! cargo run --release --example tcp_bench -- thr|lat [--size B] [--count N] [--warmup W] [--busy] [--owned]
//!
//! volley's side of the TCP benchmarks, the same shapes and output as
//! `bench/libzmq_bench.c` so `scripts/bench-tcp.sh` can put them side by side:
//!
//! * `thr`: Publisher -> Subscriber throughput over tcp://127.0.0.1, each socket on its
//!   own [`Context`] (I/O thread), the subscriber in a second application thread. Every
//!   message is 2 frames: the topic `bench` and a B-byte payload carrying its sequence
//!   number, sent with `Publisher::send_slices` from one buffer the sender rewrites,
//!   as libzmq's bench calls `zmq_send` (both copy the caller's bytes). `--owned` sends
//!   each as a `Message` made fresh instead (one allocation per message, the
//!   `Publisher::send` path). The subscriber subscribes to `bench` and the
//!   publisher waits for that subscription first. Nothing may be dropped, as with libzmq's
//!   unlimited high-water marks: the publisher's queue blocks when full (backpressure), the
//!   subscriber's buffers. The clock runs at the subscriber from the first message to the
//!   N-th; MB/s counts payload bytes, 10^6.
//! * `lat`: ping-pong over two pub/sub pairs (pinger Publisher -> ponger Subscriber,
//!   ponger Publisher -> pinger Subscriber), the pinger's pair of sockets on one Context
//!   and the ponger's on another. N timed round trips after W untimed ones; prints RTT/2
//!   p50/p99/mean in microseconds. `--busy` makes all four sockets
//!   [`RecvMode::BusyPoll`] (each thread reads or writes its connections itself);
//!   otherwise they use the default `RecvMode::Blocking`.
//!
//! Output, one line per run:
//!   RESULT impl=volley mode=thr size=64 count=1000000 received=1000000 secs=0.2 msgs_per_s=... mb_per_s=...
//!   RESULT impl=volley mode=lat recv=busy size=64 rounds=20000 p50_us=... p99_us=... mean_us=...

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use volley::io::Context;
use volley::socket::{Message, OverflowPolicy, Publisher, RecvMode, SocketOptions, Subscriber};

const TOPIC: &[u8] = b"bench";
const WAIT: Duration = Duration::from_secs(10);

struct Args {
    mode: String,
    size: usize,
    count: usize,
    warmup: usize,
    busy: bool,
    owned: bool,
}

type Res<T> = Result<T, String>;

fn parse_args() -> Res<Args> {
    let usage = "usage: tcp_bench thr [--size B] [--count N] [--busy] [--owned]\n       \
                 tcp_bench lat [--size B] [--count N] [--warmup W] [--busy]\n\
                 defaults: --size 64, --count 1000000 (thr) / 20000 (lat), --warmup 1000";
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or(usage)?;
    let mut args = Args {
        mode,
        size: 64,
        count: 0,
        warmup: 1000,
        busy: false,
        owned: false,
    };
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Res<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number\n{usage}"))
        };
        match a.as_str() {
            "--size" => args.size = num("--size")?,
            "--count" => args.count = num("--count")?,
            "--warmup" => args.warmup = num("--warmup")?,
            "--busy" => args.busy = true,
            "--owned" => args.owned = true,
            _ => return Err(format!("unknown argument {a:?}\n{usage}")),
        }
    }
    match args.mode.as_str() {
        "thr" if args.count == 0 => args.count = 1_000_000,
        "lat" if args.count == 0 => args.count = 20_000,
        "thr" | "lat" => {}
        _ => return Err(usage.to_string()),
    }
    Ok(args)
}

/// A payload of `size` bytes whose first 8 bytes (if it has them) carry `seq`.
fn payload(size: usize, seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    if size >= 8 {
        b.put_u64_le(seq);
    }
    b.resize(size, 0);
    b.freeze()
}

fn seq_of(payload: &[u8]) -> Option<u64> {
    payload
        .get(..8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

fn err(what: &str) -> impl FnOnce(volley::socket::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn context() -> Res<Context> {
    Context::new().map_err(|e| format!("starting an I/O thread: {e}"))
}

/// A publisher bound to an ephemeral loopback port, and a subscriber to `bench` connected
/// to it, each on its own context; returns once the subscription has arrived.
fn pair(
    pub_ctx: &Context,
    pub_opts: SocketOptions,
    sub_ctx: &Context,
    sub_opts: SocketOptions,
) -> Res<(Publisher, Subscriber)> {
    let mut publisher = Publisher::with_options(pub_ctx, pub_opts).map_err(err("publisher"))?;
    let endpoint = publisher.bind("tcp://127.0.0.1:0").map_err(err("bind"))?;
    let mut subscriber = Subscriber::with_options(sub_ctx, sub_opts).map_err(err("subscriber"))?;
    subscriber
        .connect(&endpoint.to_string())
        .map_err(err("connect"))?;
    subscriber.subscribe(TOPIC).map_err(err("subscribe"))?;
    if !publisher.wait_for_subscribers(1, WAIT) {
        return Err(format!(
            "no subscription arrived at {endpoint} within {WAIT:?}"
        ));
    }
    Ok((publisher, subscriber))
}

fn message(size: usize, seq: u64) -> Message {
    Message::with_topic(Bytes::from_static(TOPIC), payload(size, seq))
}

fn run_thr(a: &Args) -> Res<()> {
    let (pub_ctx, sub_ctx) = (context()?, context()?);
    let recv_mode = if a.busy {
        RecvMode::BusyPoll
    } else {
        RecvMode::Blocking
    };
    let pub_opts = SocketOptions {
        policy: OverflowPolicy::Block { timeout: None },
        recv_mode,
        ..SocketOptions::default()
    };
    let sub_opts = SocketOptions {
        queue_capacity: 1 << 16,
        policy: OverflowPolicy::Buffer { max_bytes: 1 << 31 },
        recv_mode,
        ..SocketOptions::default()
    };
    let (mut publisher, mut subscriber) = pair(&pub_ctx, pub_opts, &sub_ctx, sub_opts)?;
    let (count, size) = (a.count, a.size);
    let receiver = thread::spawn(move || -> Res<(usize, Duration)> {
        let mut start = None;
        let mut received = 0;
        while received < count {
            match subscriber.recv_timeout(WAIT).map_err(err("recv"))? {
                Some(m) => {
                    start.get_or_insert_with(Instant::now);
                    let frames = m.frames();
                    if frames.len() != 2 || frames[1].len() != size {
                        return Err(format!("a message of {} frames / wrong size", frames.len()));
                    }
                    received += 1;
                }
                None => break, // lost messages: report what came
            }
        }
        Ok((received, start.map_or(Duration::ZERO, |s| s.elapsed())))
    });
    let mut buffer = vec![0u8; a.size];
    for i in 0..a.count {
        if a.owned {
            publisher.send(message(a.size, i as u64))
        } else {
            if let Some(seq) = buffer.get_mut(..8) {
                seq.copy_from_slice(&(i as u64).to_le_bytes());
            }
            publisher.send_slices(&[TOPIC, &buffer])
        }
        .map_err(err("send"))?;
    }
    let (received, elapsed) = receiver.join().map_err(|_| "receiver panicked")??;
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        received as f64 / secs
    } else {
        0.0
    };
    println!(
        "RESULT impl=volley mode=thr recv={} send={} size={} count={} received={received} secs={secs:.3} msgs_per_s={rate:.0} mb_per_s={:.2}",
        if a.busy { "busy" } else { "blocking" },
        if a.owned { "owned" } else { "slices" },
        a.size,
        a.count,
        rate * a.size as f64 / 1e6
    );
    if received < a.count {
        return Err(format!(
            "only {received} of {} messages arrived (publisher dropped {})",
            a.count,
            publisher.stats().dropped
        ));
    }
    Ok(())
}

fn run_lat(a: &Args) -> Res<()> {
    let (ping_ctx, pong_ctx) = (context()?, context()?);
    let sub_opts = SocketOptions {
        recv_mode: if a.busy {
            RecvMode::BusyPoll
        } else {
            RecvMode::Blocking
        },
        ..SocketOptions::default()
    };
    // Busy-polling sockets do their own I/O on the calling thread, the publishers' sends
    // included: both ends of each pair use the same mode.
    let pub_opts = sub_opts.clone();
    // Pair A carries pings (pinger publishes), pair B pongs (ponger publishes).
    let (mut pub_a, mut sub_a) = pair(&ping_ctx, pub_opts.clone(), &pong_ctx, sub_opts.clone())?;
    let (mut pub_b, mut sub_b) = pair(&pong_ctx, pub_opts, &ping_ctx, sub_opts)?;
    let total = a.warmup + a.count;
    let ponger = thread::spawn(move || -> Res<()> {
        for _ in 0..total {
            let m = sub_a
                .recv_timeout(WAIT)
                .map_err(err("ponger recv"))?
                .ok_or("ponger: a ping was lost")?;
            pub_b.send(m).map_err(err("ponger send"))?;
        }
        Ok(())
    });
    let mut rtt = Vec::with_capacity(a.count);
    for i in 0..total {
        let t0 = Instant::now();
        pub_a.send(message(a.size, i as u64)).map_err(err("send"))?;
        let m = sub_b
            .recv_timeout(WAIT)
            .map_err(err("recv"))?
            .ok_or_else(|| format!("pong {i} was lost"))?;
        let t1 = t0.elapsed();
        let p = m.frames().get(1).ok_or("a pong without payload")?;
        if p.len() != a.size || (a.size >= 8 && seq_of(p) != Some(i as u64)) {
            return Err(format!("pong {i} does not echo its ping"));
        }
        if i >= a.warmup {
            rtt.push(t1);
        }
    }
    ponger.join().map_err(|_| "ponger panicked")??;
    rtt.sort_unstable();
    let n = rtt.len();
    if n == 0 {
        return Err("--count must be at least 1".into());
    }
    let half_us = |d: Duration| d.as_secs_f64() * 1e6 / 2.0;
    let p99 = rtt[((n as f64 * 0.99) as usize).min(n - 1)];
    let mean = rtt.iter().sum::<Duration>() / n as u32;
    println!(
        "RESULT impl=volley mode=lat recv={} size={} rounds={n} p50_us={:.2} p99_us={:.2} mean_us={:.2}",
        if a.busy { "busy" } else { "blocking" },
        a.size,
        half_us(rtt[n / 2]),
        half_us(p99),
        half_us(mean)
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|a| match a.mode.as_str() {
        "thr" => run_thr(&a),
        _ => run_lat(&a),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
