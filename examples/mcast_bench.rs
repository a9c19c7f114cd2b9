//! cargo run --release --example mcast_bench -- lat|thr [--impl volley|raw] [--size B] [--count N] [--warmup W] [--reliable] [--loss P] [--linger-us U] [--datagram B] [--gro] [--blocking]
//!
//! The multicast benchmarks `scripts/bench-mcast.sh` runs, on loopback groups
//! (`iface=127.0.0.1`), volley against a raw non-blocking UDP socket:
//!
//! * `lat`: ping-pong over two groups. The pinger publishes on group A and listens on
//!   group B, the ponger the other way round; every message is one frame of B bytes
//!   (raw: one B-byte datagram). Both sides busy-poll: volley's subscribers are
//!   [`RecvMode::BusyPoll`] (the calling thread reads the socket itself), the raw side
//!   spins on a non-blocking `recv`. N timed round trips after W untimed ones; prints
//!   RTT/2 p50/p99/mean in microseconds.
//! * `thr`: one publisher thread sends N messages of B bytes as fast as it can, one
//!   busy-polling subscriber thread counts them. Both send from one buffer that carries
//!   the sequence number (volley with `Publisher::send_slices`, which copies it into the
//!   datagram as the raw side's `send` does). volley packs small messages into
//!   datagrams (the default 50 µs linger); raw sends one datagram per message. The
//!   clock runs from the first send to the arrival of the last message received;
//!   without flow control in multicast, what the receiver could not keep up with is lost
//!   and reported (volley counts it exactly; for raw it is N minus what arrived). The
//!   publisher's CPU time per message is printed too: on a shared host it does not
//!   depend on how much of the core other processes took.
//!
//! `--reliable` turns on NAK-based repair on both sides, `--loss P` the loss generator
//! in the receive path of every volley subscriber (drop probability P): `--reliable
//! --loss 0.01` is the reliable mode at 1% loss. `--linger-us` overrides the publisher's
//! linger. `--gro` turns on UDP GRO at volley's subscribers (`MulticastOptions::gro`).
//! `--blocking` makes `thr`'s subscriber a [`RecvMode::Blocking`] one, the default mode:
//! the I/O thread reads the socket into the subscriber's ring and the counting thread
//! sleeps in `recv_timeout` between messages (three threads on the way instead of two).
//!
//! Output, one line per run:
//!   RESULT impl=volley mode=lat size=64 rounds=20000 reliable=0 loss=0 p50_us=.. p99_us=.. mean_us=..
//!   RESULT impl=volley mode=thr size=64 count=2000000 datagram=1400 gro=0 blocking=0 reliable=0 loss=0 received=.. lost=.. secs=.. msgs_per_s=.. send_cpu_ns_per_msg=..

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use volley::io::Context;
use volley::proto::mcast::LossConfig;
use volley::socket::{Message, Publisher, RecvMode, SocketOptions, Subscriber};

type Res<T> = Result<T, String>;

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

struct Args {
    mode: String,
    raw: bool,
    size: usize,
    count: usize,
    warmup: usize,
    reliable: bool,
    loss: f64,
    linger_us: Option<u64>,
    datagram: Option<usize>,
    gro: bool,
    blocking: bool,
}

fn parse_args() -> Res<Args> {
    let usage = "usage: mcast_bench lat|thr [--impl volley|raw] [--size B] [--count N] \
                 [--warmup W] [--reliable] [--loss P] [--linger-us U] [--datagram B] [--gro] [--blocking]\n\
                 defaults: --impl volley --size 64 --count 20000 (lat) / 2000000 (thr) --warmup 1000";
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or(usage)?;
    let mut args = Args {
        mode,
        raw: false,
        size: 64,
        count: 0,
        warmup: 1000,
        reliable: false,
        loss: 0.0,
        linger_us: None,
        datagram: None,
        gro: false,
        blocking: false,
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Res<String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{usage}"))
        };
        let bad = |name: &str| format!("{name}: not a number\n{usage}");
        match a.as_str() {
            "--impl" => {
                args.raw = match value("--impl")?.as_str() {
                    "raw" => true,
                    "volley" => false,
                    other => return Err(format!("--impl {other:?}: volley or raw")),
                }
            }
            "--size" => args.size = value("--size")?.parse().map_err(|_| bad("--size"))?,
            "--count" => args.count = value("--count")?.parse().map_err(|_| bad("--count"))?,
            "--warmup" => args.warmup = value("--warmup")?.parse().map_err(|_| bad("--warmup"))?,
            "--loss" => args.loss = value("--loss")?.parse().map_err(|_| bad("--loss"))?,
            "--linger-us" => {
                args.linger_us = Some(
                    value("--linger-us")?
                        .parse()
                        .map_err(|_| bad("--linger-us"))?,
                )
            }
            "--datagram" => {
                args.datagram = Some(
                    value("--datagram")?
                        .parse()
                        .map_err(|_| bad("--datagram"))?,
                )
            }
            "--reliable" => args.reliable = true,
            "--gro" => args.gro = true,
            "--blocking" => args.blocking = true,
            _ => return Err(format!("unknown argument {a:?}\n{usage}")),
        }
    }
    match args.mode.as_str() {
        "lat" if args.count == 0 => args.count = 20_000,
        "thr" if args.count == 0 => args.count = 2_000_000,
        "lat" | "thr" => {}
        _ => return Err(usage.into()),
    }
    if args.size < 8 {
        return Err("--size must be at least 8 (the message number is in it)".into());
    }
    if args.raw && (args.reliable || args.loss > 0.0 || args.gro || args.blocking) {
        return Err(
            "--reliable, --loss, --gro and --blocking are volley's: not with --impl raw".into(),
        );
    }
    Ok(args)
}

/// Two groups and a port of this run alone, so that runs never hear each other.
fn groups() -> (Ipv4Addr, Ipv4Addr, u16) {
    let pid = std::process::id();
    let port = 30_000 + (pid % 30_000) as u16;
    let b = (pid % 250) as u8 + 1;
    (
        Ipv4Addr::new(239, 255, 90, b),
        Ipv4Addr::new(239, 255, 91, b),
        port,
    )
}

fn endpoint(group: Ipv4Addr, port: u16) -> String {
    format!("udp://{group}:{port}?iface=127.0.0.1")
}

fn options(args: &Args, recv_mode: RecvMode) -> SocketOptions {
    let mut options = SocketOptions {
        queue_capacity: 1 << 20,
        recv_mode,
        ..SocketOptions::default()
    };
    if args.reliable {
        options.multicast = options.multicast.reliable();
    }
    if let Some(size) = args.datagram {
        options.multicast.sender.max_datagram_size = size;
    }
    if let Some(us) = args.linger_us {
        options.multicast.sender.linger = Duration::from_micros(us);
    }
    options
}

fn subscriber(
    ctx: &Context,
    args: &Args,
    group: Ipv4Addr,
    port: u16,
    seed: u64,
) -> Res<Subscriber> {
    let mode = if args.blocking {
        RecvMode::Blocking
    } else {
        RecvMode::BusyPoll
    };
    let mut options = options(args, mode);
    options.multicast.gro = args.gro;
    if args.loss > 0.0 {
        options.multicast.loss = LossConfig::drop_rate(args.loss, seed);
    }
    let mut sub = Subscriber::with_options(ctx, options).map_err(|e| e.to_string())?;
    sub.connect(&endpoint(group, port))
        .map_err(|e| e.to_string())?;
    sub.subscribe("").map_err(|e| e.to_string())?;
    Ok(sub)
}

fn publisher(ctx: &Context, args: &Args, group: Ipv4Addr, port: u16) -> Res<Publisher> {
    let mut publisher = Publisher::with_options(ctx, options(args, RecvMode::Blocking))
        .map_err(|e| e.to_string())?;
    publisher
        .bind(&endpoint(group, port))
        .map_err(|e| e.to_string())?;
    Ok(publisher)
}

/// A raw member: bound to `listen`'s group (so it hears that group only), sending
/// wherever it is told.
fn raw_socket(listen: Ipv4Addr, port: u16) -> Res<UdpSocket> {
    let s = (|| -> std::io::Result<UdpSocket> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.set_recv_buffer_size(4 << 20)?;
        s.set_multicast_if_v4(&LOOPBACK)?;
        s.set_multicast_loop_v4(true)?;
        s.set_multicast_all_v4(false)?;
        s.bind(&SockAddr::from(SocketAddrV4::new(listen, port)))?;
        s.join_multicast_v4(&listen, &LOOPBACK)?;
        Ok(s.into())
    })();
    s.map_err(|e| format!("raw socket on {listen}:{port}: {e}"))
}

fn raw_recv_spin(s: &UdpSocket, buf: &mut [u8], deadline: Instant) -> Res<usize> {
    let mut spins = 0u32;
    loop {
        match s.recv(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                spins = spins.wrapping_add(1);
                if spins % 64 == 0 {
                    if Instant::now() > deadline {
                        return Err("raw: timed out waiting for a datagram".into());
                    }
                    thread::yield_now();
                }
                std::hint::spin_loop();
            }
            Err(e) => return Err(format!("raw recv: {e}")),
        }
    }
}

fn raw_send_spin(s: &UdpSocket, datagram: &[u8], to: SocketAddr) -> Res<()> {
    loop {
        match s.send_to(datagram, to) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(format!("raw send: {e}")),
        }
    }
}

fn volley_recv(sub: &mut Subscriber, deadline: Instant) -> Res<Message> {
    loop {
        if let Some(m) = sub
            .recv_timeout(Duration::from_millis(100))
            .map_err(|e| e.to_string())?
        {
            return Ok(m);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "volley: timed out waiting for a message; {:?}",
                sub.multicast_stats()
            ));
        }
    }
}

/// CPU time this thread has used: unlike the wall clock, it does not count the time
/// other processes on a shared host took the core.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec that lives across the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn lat(args: &Args) -> Res<()> {
    let (a, b, port) = groups();
    let total = args.warmup + args.count;
    let payload = vec![0x5au8; args.size];
    let deadline = Instant::now() + Duration::from_secs(120);
    let rtts: Vec<f64> = if args.raw {
        let pinger = raw_socket(b, port)?;
        let ponger = raw_socket(a, port)?;
        let to_a = SocketAddr::from(SocketAddrV4::new(a, port));
        let to_b = SocketAddr::from(SocketAddrV4::new(b, port));
        thread::scope(|scope| {
            let echo = scope.spawn(|| -> Res<()> {
                let mut buf = vec![0u8; 65_536];
                for _ in 0..total {
                    let n = raw_recv_spin(&ponger, &mut buf, deadline)?;
                    raw_send_spin(&ponger, &buf[..n], to_b)?;
                }
                Ok(())
            });
            let mut buf = vec![0u8; 65_536];
            let mut rtts = Vec::with_capacity(args.count);
            for i in 0..total {
                let t = Instant::now();
                raw_send_spin(&pinger, &payload, to_a)?;
                raw_recv_spin(&pinger, &mut buf, deadline)?;
                if i >= args.warmup {
                    rtts.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
                }
            }
            echo.join().map_err(|_| "echo thread panicked")??;
            Ok::<_, String>(rtts)
        })?
    } else {
        let ping_ctx = Context::new().map_err(|e| e.to_string())?;
        let pong_ctx = Context::new().map_err(|e| e.to_string())?;
        let mut ping_pub = publisher(&ping_ctx, args, a, port)?;
        let mut ping_sub = subscriber(&ping_ctx, args, b, port, 11)?;
        let mut pong_sub = subscriber(&pong_ctx, args, a, port, 12)?;
        let mut pong_pub = publisher(&pong_ctx, args, b, port)?;
        // The echo side's publisher must outlive the last pong's arrival: in reliable mode
        // a lost last pong is repaired only by a publisher that is still there to announce
        // it (heartbeat) and to answer the NAK. Dropped right after its last send, it left
        // about one run in thirty waiting for a pong that could never come.
        let pinger_done = std::sync::atomic::AtomicBool::new(false);
        let pinger_done = &pinger_done;
        thread::scope(|scope| {
            let echo = scope.spawn(move || -> Res<()> {
                for _ in 0..total {
                    let m = volley_recv(&mut pong_sub, deadline)?;
                    pong_pub.send(m).map_err(|e| e.to_string())?;
                }
                pong_pub.flush(Duration::from_secs(1));
                while !pinger_done.load(std::sync::atomic::Ordering::Acquire) {
                    if Instant::now() > deadline {
                        return Err("volley: the pinger did not finish".into());
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            });
            let mut rtts = Vec::with_capacity(args.count);
            let payload = Bytes::from(payload.clone());
            for i in 0..total {
                let t = Instant::now();
                ping_pub
                    .send(Message::from_parts([payload.clone()]))
                    .map_err(|e| e.to_string())?;
                let got = volley_recv(&mut ping_sub, deadline);
                if got.is_err() {
                    pinger_done.store(true, std::sync::atomic::Ordering::Release);
                }
                got?;
                if i >= args.warmup {
                    rtts.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
                }
            }
            pinger_done.store(true, std::sync::atomic::Ordering::Release);
            echo.join().map_err(|_| "echo thread panicked")??;
            Ok::<_, String>(rtts)
        })?
    };
    let mut sorted = rtts;
    sorted.sort_by(f64::total_cmp);
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    println!(
        "RESULT impl={} mode=lat size={} rounds={} reliable={} loss={} p50_us={:.2} p99_us={:.2} mean_us={:.2}",
        if args.raw { "raw" } else { "volley" },
        args.size,
        sorted.len(),
        u8::from(args.reliable),
        args.loss,
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        mean
    );
    Ok(())
}

/// What a throughput receiver saw.
struct Received {
    received: u64,
    lost: u64,
    /// When the last message arrived (None: none did).
    last: Option<Instant>,
}

/// A throughput receiver's count and clock. The clock is read when the socket runs dry,
/// not per message: reading it costs as much as a message here.
#[derive(Default)]
struct Arrivals {
    received: u64,
    last: Option<Instant>,
    /// Messages arrived since the clock was last read.
    fresh: bool,
}

impl Arrivals {
    /// A message arrived; true once `n` have.
    fn arrived(&mut self, n: u64) -> bool {
        self.fresh = true;
        self.received += 1;
        if self.received == n {
            self.last = Some(Instant::now());
            return true;
        }
        false
    }

    /// Nothing is waiting: how long since the last arrival (None before the first).
    fn quiet(&mut self) -> Option<Duration> {
        if std::mem::take(&mut self.fresh) {
            self.last = Some(Instant::now());
        }
        self.last.map(|t| t.elapsed())
    }

    /// When the last message arrived (None: none did).
    fn last(&self) -> Option<Instant> {
        self.last
    }
}

fn thr(args: &Args) -> Res<()> {
    let (a, _, port) = groups();
    let n = args.count as u64;
    let idle = Duration::from_millis(300);
    let (got, start, send_secs) = if args.raw {
        let rx = raw_socket(a, port)?;
        let tx = raw_socket(Ipv4Addr::new(239, 255, 92, 1), port)?;
        let to = SocketAddr::from(SocketAddrV4::new(a, port));
        thread::scope(|scope| {
            let counter = scope.spawn(|| {
                let mut buf = vec![0u8; 65_536];
                let mut arrivals = Arrivals::default();
                loop {
                    match rx.recv(&mut buf) {
                        Ok(_) => {
                            if arrivals.arrived(n) {
                                break;
                            }
                        }
                        Err(_) => {
                            if arrivals.quiet().is_some_and(|quiet| quiet > idle) {
                                break;
                            }
                            std::hint::spin_loop();
                        }
                    }
                }
                Received {
                    received: arrivals.received,
                    lost: n - arrivals.received,
                    last: arrivals.last(),
                }
            });
            thread::sleep(Duration::from_millis(50));
            let mut datagram = vec![0x5au8; args.size];
            let cpu = thread_cpu();
            let start = Instant::now();
            for i in 0..n {
                datagram[..8].copy_from_slice(&i.to_le_bytes());
                raw_send_spin(&tx, &datagram, to)?;
            }
            let send_secs = (thread_cpu() - cpu).as_secs_f64();
            let got = counter.join().map_err(|_| "counter panicked")?;
            Ok::<_, String>((got, start, send_secs))
        })?
    } else {
        let pub_ctx = Context::new().map_err(|e| e.to_string())?;
        let sub_ctx = Context::new().map_err(|e| e.to_string())?;
        let mut sub = subscriber(&sub_ctx, args, a, port, 21)?;
        let mut publisher = publisher(&pub_ctx, args, a, port)?;
        let blocking = args.blocking;
        thread::scope(|scope| {
            let counter = scope.spawn(move || {
                let mut arrivals = Arrivals::default();
                let accounted = |sub: &Subscriber| -> (u64, u64) {
                    let stats = sub.multicast_stats();
                    let t = stats[0].protocol.total();
                    (t.delivered_messages, t.lost_messages)
                };
                loop {
                    // A blocking subscriber sleeps between messages, as its users' threads
                    // would; spinning here would take the core its I/O thread reads on.
                    let next = if blocking {
                        sub.recv_timeout(Duration::from_millis(1))
                    } else {
                        sub.try_recv()
                    };
                    match next {
                        Ok(Some(_)) => {
                            if arrivals.arrived(n) {
                                break;
                            }
                        }
                        Ok(None) => {
                            if let Some(quiet) = arrivals.quiet() {
                                // Quiet for a moment: done once every message is either
                                // here or counted as lost, or after a long silence.
                                if quiet > Duration::from_millis(2) {
                                    let (d, l) = accounted(&sub);
                                    if (d + l >= n && arrivals.received >= d) || quiet > idle {
                                        break;
                                    }
                                }
                            }
                            std::hint::spin_loop();
                        }
                        Err(_) => break,
                    }
                }
                let (_, lost) = accounted(&sub);
                let stats = &sub.multicast_stats()[0];
                let t = stats.protocol.total();
                eprintln!(
                    "volley subscriber: kernel drops {}, lost datagrams {} ({} unrecoverable, \
                     {} overrun), {} NAKs sent",
                    stats.kernel_drops,
                    t.lost_datagrams,
                    t.unrecoverable_datagrams,
                    t.overrun_datagrams,
                    t.naks_sent
                );
                Received {
                    received: arrivals.received,
                    lost,
                    last: arrivals.last(),
                }
            });
            thread::sleep(Duration::from_millis(50));
            let mut payload = vec![0x5au8; args.size];
            let cpu = thread_cpu();
            let start = Instant::now();
            for i in 0..n {
                payload[..8].copy_from_slice(&i.to_le_bytes());
                publisher
                    .send_slices(&[&payload])
                    .map_err(|e| e.to_string())?;
            }
            publisher.flush(Duration::from_secs(5));
            let send_secs = (thread_cpu() - cpu).as_secs_f64();
            let got = counter.join().map_err(|_| "counter panicked")?;
            let stats = &publisher.multicast_stats()[0].protocol;
            eprintln!(
                "volley publisher: {} messages in {} datagrams, {} retransmitted, {} NAKs",
                stats.messages, stats.datagrams, stats.retransmits, stats.naks_received
            );
            Ok::<_, String>((got, start, send_secs))
        })?
    };
    let secs = got
        .last
        .map_or(0.0, |last| last.duration_since(start).as_secs_f64());
    println!(
        "RESULT impl={} mode=thr size={} count={n} datagram={} gro={} blocking={} reliable={} loss={} received={} lost={} secs={:.3} msgs_per_s={:.0} send_cpu_ns_per_msg={:.0}",
        if args.raw { "raw" } else { "volley" },
        args.size,
        if args.raw { args.size } else { args.datagram.unwrap_or(1400) },
        u8::from(args.gro),
        u8::from(args.blocking),
        u8::from(args.reliable),
        args.loss,
        got.received,
        got.lost,
        secs,
        got.received as f64 / secs.max(1e-9),
        send_secs * 1e9 / n as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| match args.mode.as_str() {
        "lat" => lat(&args),
        _ => thr(&args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcast_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
