//! `volley statsd`: send metrics to a StatsD daemon, as raw lines or from flags, through
//! the library's client (validated for the flavour, packed into datagrams), and the
//! StatsD part of `volley demo`.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use volley::statsd::{check_line, Client, Flavour, Metric, MetricError, Tag};

/// The wire dialect, on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FlavourArg {
    /// Etsy statsd (tags as `|#k:v`, folded into the key by statsd 0.9+).
    Etsy,
    /// Datadog's DogStatsD.
    Dogstatsd,
    /// Telegraf's statsd input (tags in the name).
    Telegraf,
}

impl From<FlavourArg> for Flavour {
    fn from(f: FlavourArg) -> Flavour {
        match f {
            FlavourArg::Etsy => Flavour::Etsy,
            FlavourArg::Dogstatsd => Flavour::DogStatsd,
            FlavourArg::Telegraf => Flavour::Telegraf,
        }
    }
}

/// Options of `volley statsd`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    volley statsd 127.0.0.1:8125 'api.hits:1|c' 'api.temp:21.5|g'\n  \
    volley statsd 127.0.0.1:8125 --count api.hits 3 --timing api.lat 12.5 --tag env:prod --flavour dogstatsd\n  \
    volley statsd unix:///var/run/datadog/dsd.socket --flavour dogstatsd --gauge queue -4")]
pub struct StatsdArgs {
    /// Daemon address: HOST:PORT, udp://HOST:PORT, unix://PATH or a socket path.
    addr: String,
    /// Metric lines to send as they are (`name:value|type[|@rate][|#tags]`), each checked
    /// against the flavour first.
    lines: Vec<String>,
    /// Counter: NAME VALUE (integer).
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], allow_negative_numbers = true)]
    count: Vec<String>,
    /// Gauge set: NAME VALUE.
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], allow_negative_numbers = true)]
    gauge: Vec<String>,
    /// Gauge change: NAME DELTA (Etsy, Telegraf).
    #[arg(long, num_args = 2, value_names = ["NAME", "DELTA"], allow_negative_numbers = true)]
    gauge_delta: Vec<String>,
    /// Timer: NAME MILLISECONDS.
    #[arg(long, num_args = 2, value_names = ["NAME", "MS"])]
    timing: Vec<String>,
    /// Histogram: NAME VALUE (DogStatsD, Telegraf).
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], allow_negative_numbers = true)]
    histogram: Vec<String>,
    /// Distribution: NAME VALUE (DogStatsD).
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], allow_negative_numbers = true)]
    distribution: Vec<String>,
    /// Set member: NAME MEMBER.
    #[arg(long, num_args = 2, value_names = ["NAME", "MEMBER"])]
    set: Vec<String>,
    /// A tag for the flag metrics: KEY:VALUE, or KEY alone. Repeatable.
    #[arg(long = "tag", value_name = "KEY:VALUE")]
    tags: Vec<String>,
    /// Prefix for the flag metrics' names.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Wire dialect.
    #[arg(long, value_enum, default_value = "etsy")]
    flavour: FlavourArg,
    /// Largest datagram payload in bytes.
    #[arg(long, default_value_t = volley::statsd::DEFAULT_MAX_PAYLOAD)]
    max_payload: usize,
}

fn pairs(values: &[String]) -> impl Iterator<Item = (&str, &str)> {
    values.chunks(2).map(|c| (c[0].as_str(), c[1].as_str()))
}

fn number<T: std::str::FromStr>(flag: &str, name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("--{flag} {name} {value}: not a number"))
}

pub fn run(args: &StatsdArgs) -> Result<(), String> {
    let flavour: Flavour = args.flavour.into();
    // Check every raw line before sending anything: all or nothing.
    for line in &args.lines {
        check_line(line.as_bytes(), flavour).map_err(|e| format!("{line:?}: {e}"))?;
    }
    let client = Client::builder(&args.addr)
        .flavour(flavour)
        .prefix(&args.prefix)
        .max_payload(args.max_payload)
        .build()
        .map_err(|e| e.to_string())?;
    let tags: Vec<Tag<'_>> = args
        .tags
        .iter()
        .map(|t| t.split_once(':').unwrap_or((t.as_str(), "")))
        .collect();
    let mut metrics: Vec<Metric<'_>> = Vec::new();
    for (name, v) in pairs(&args.count) {
        metrics.push(Metric::count(name, number("count", name, v)?));
    }
    for (name, v) in pairs(&args.gauge) {
        metrics.push(Metric::gauge(name, number("gauge", name, v)?));
    }
    for (name, v) in pairs(&args.gauge_delta) {
        metrics.push(Metric::gauge_delta(name, number("gauge-delta", name, v)?));
    }
    for (name, v) in pairs(&args.timing) {
        metrics.push(Metric::timing_ms(name, number("timing", name, v)?));
    }
    for (name, v) in pairs(&args.histogram) {
        metrics.push(Metric::histogram(name, number("histogram", name, v)?));
    }
    for (name, v) in pairs(&args.distribution) {
        metrics.push(Metric::distribution(name, number("distribution", name, v)?));
    }
    for (name, member) in pairs(&args.set) {
        metrics.push(Metric::set(name, member));
    }
    if metrics.is_empty() && args.lines.is_empty() {
        return Err(
            "nothing to send: give metric lines or flags such as --count NAME VALUE".into(),
        );
    }
    for line in &args.lines {
        client
            .send_line(line)
            .map_err(|e| format!("{line:?}: {e}"))?;
    }
    for m in &metrics {
        client
            .send(m.tags(&tags))
            .map_err(|e| format!("{}: {e}", m.name()))?;
    }
    client.flush().map_err(|e| e.to_string())?;
    let s = client.stats();
    println!(
        "sent {} lines in {} datagrams ({} bytes) to {}",
        s.sent_lines, s.sent_datagrams, s.sent_bytes, args.addr
    );
    if s.send_errors > 0 {
        return Err(format!(
            "{} datagrams ({} lines) could not be sent",
            s.send_errors, s.lost_lines
        ));
    }
    Ok(())
}

/// The StatsD part of `volley demo`: a local UDP socket plays the daemon; the client
/// sends every metric type, with a full queue and with aggregation, and the demo checks
/// what arrived against the client's own counters.
pub fn demo() -> Result<(), String> {
    println!("\n== statsd: a client sending to a UDP socket on loopback that plays the daemon");
    let daemon = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    daemon
        .set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    // A daemon's socket usually has a large buffer; the kernel caps it at rmem_max.
    let _ = socket2::SockRef::from(&daemon).set_recv_buffer_size(4 << 20);
    let addr = daemon.local_addr().map_err(|e| e.to_string())?.to_string();
    // The "daemon" reads all the time, as a real one does, so its socket buffer does not
    // overflow during the burst.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_reader = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !stop_reader.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = daemon.recv(&mut buf) {
                for line in String::from_utf8_lossy(&buf[..n]).split('\n') {
                    let _ = tx.send(line.to_string());
                }
            }
        }
    });
    let receive = || {
        let mut lines = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
        lines
    };
    let result = demo_parts(&addr, receive);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    result
}

/// The three demo steps; `receive` returns the lines that arrived until the daemon has
/// been quiet for 200 ms.
fn demo_parts(addr: &str, receive: impl Fn() -> Vec<String>) -> Result<(), String> {
    // 1. Every type, exact lines.
    let client = Client::builder(addr)
        .prefix("demo")
        .flush_interval(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let check = |r: Result<(), MetricError>| r.map_err(|e| e.to_string());
    check(client.count("requests", 3))?;
    check(client.gauge("queue", -4.0))?;
    check(client.gauge_delta("queue", 1.0))?;
    check(client.timing("latency", Duration::from_micros(12_345)))?;
    check(client.set("users", "alice"))?;
    check(client.send(Metric::count("tagged", 1).tags(&[("route", "/a")])))?;
    let refused = client.distribution("not.in.etsy", 1.0);
    check(client.flush())?;
    let lines = receive();
    let expected = [
        "demo.requests:3|c",
        "demo.queue:0|g",
        "demo.queue:-4|g",
        "demo.queue:+1|g",
        "demo.latency:12.345|ms",
        "demo.users:alice|s",
        "demo.tagged:1|c|#route:/a",
    ];
    for l in &lines {
        println!("  received  {l}");
    }
    if lines != expected {
        return Err(format!(
            "statsd demo: expected {expected:?}, received {lines:?}"
        ));
    }
    println!(
        "  refused   distribution for Etsy: {}",
        refused.map_or_else(|e| e.to_string(), |_| "accepted?!".into())
    );
    if refused.is_ok() {
        return Err("statsd demo: Etsy flavour accepted a distribution".into());
    }

    // 2. A burst into a small queue: every metric is sent or counted as dropped.
    let client = Client::builder(addr)
        .queue_capacity(64)
        .build()
        .map_err(|e| e.to_string())?;
    let burst = 200_000u64;
    let start = Instant::now();
    let mut refused = 0u64;
    for i in 0..burst {
        if client.count("burst", (i % 10) as i64).is_err() {
            refused += 1;
        }
    }
    let elapsed = start.elapsed();
    check(client.flush())?;
    let s = client.stats();
    let received = receive().len() as u64;
    println!(
        "  burst of {burst} counters, queue 64: {:.0} ns/metric on the caller, accepted {}, dropped {} (counted), sent {} lines in {} datagrams, received {received}",
        elapsed.as_nanos() as f64 / burst as f64,
        s.accepted,
        s.dropped,
        s.sent_lines,
        s.sent_datagrams
    );
    if s.accepted + s.dropped != burst || s.dropped != refused || s.sent_lines != s.accepted {
        return Err(format!(
            "statsd demo: burst accounting does not add up: {s:?}"
        ));
    }
    if received > s.sent_lines {
        return Err(format!(
            "statsd demo: received {received} > sent {}",
            s.sent_lines
        ));
    }
    if received < s.sent_lines {
        println!(
            "  (the loopback socket's buffer dropped {} lines: the daemon side, not the client)",
            s.sent_lines - received
        );
    }

    // 3. Aggregation: 10,000 increments become one line.
    let client = Client::builder(addr)
        .queue_capacity(16_384)
        .aggregate(true)
        .flush_interval(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    for _ in 0..10_000 {
        check(client.incr("aggregated"))?;
    }
    check(client.flush())?;
    let lines = receive();
    let s = client.stats();
    println!(
        "  aggregation: 10000 increments sent as {lines:?} ({} datagram)",
        s.sent_datagrams
    );
    if lines != ["aggregated:10000|c"] {
        return Err(format!("statsd demo: aggregation sent {lines:?}"));
    }
    Ok(())
}
