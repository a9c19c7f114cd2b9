//! The StatsD client over real sockets on loopback: what arrives, when, and how every
//! refusal and drop is counted.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley::ring::OverflowPolicy;
use volley::statsd::{Client, ClientBuilder, Flavour, Metric, MetricError};

/// A UDP socket standing in for the daemon. A thread reads it from the start, as a real
/// daemon does, so its receive buffer never overflows whatever a test sends.
struct Daemon {
    addr: String,
    datagrams: Receiver<String>,
    stop: Arc<AtomicBool>,
}

impl Daemon {
    fn new() -> Daemon {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        let addr = socket.local_addr().unwrap().to_string();
        let (tx, datagrams) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let _ = tx.send(String::from_utf8(buf[..n].to_vec()).unwrap());
                }
            }
        });
        Daemon {
            addr,
            datagrams,
            stop,
        }
    }

    fn client(&self) -> ClientBuilder {
        Client::builder(&self.addr)
    }

    /// Every datagram that arrives until none has for `wait`.
    fn datagrams(&self, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(d) = self.datagrams.recv_timeout(wait) {
            out.push(d);
        }
        out
    }

    fn lines(&self, wait: Duration) -> Vec<String> {
        self.datagrams(wait)
            .iter()
            .flat_map(|d| d.split('\n').map(str::to_string).collect::<Vec<_>>())
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const QUIET: Duration = Duration::from_millis(150);

#[test]
fn lines_arrive_packed_in_order_after_flush() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .prefix("app")
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    client.count("a", 1).unwrap();
    client.gauge("b", -2.0).unwrap();
    client.gauge_delta("b", 1.0).unwrap();
    client.timing("c", Duration::from_micros(1500)).unwrap();
    client.set("d", "x").unwrap();
    client.flush().unwrap();
    assert_eq!(
        daemon.datagrams(QUIET),
        ["app.a:1|c\napp.b:0|g\napp.b:-2|g\napp.b:+1|g\napp.c:1.5|ms\napp.d:x|s"]
    );
    let s = client.stats();
    assert_eq!(
        (s.accepted, s.sent_lines, s.sent_datagrams, s.queued),
        (5, 6, 1, 0)
    );
    assert_eq!(s.sent_bytes, 64);
}

#[test]
fn flushes_on_the_interval_without_being_asked() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let start = Instant::now();
    client.incr("tick").unwrap();
    let got = daemon.datagrams(Duration::from_millis(300));
    assert_eq!(got, ["tick:1|c"]);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn datagrams_fill_to_the_payload_limit_and_no_further() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .max_payload(100)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..1000 {
        client.count(&format!("metric.{i:04}"), i).unwrap();
    }
    client.flush().unwrap();
    let datagrams = daemon.datagrams(QUIET);
    let mut seen = 0;
    for d in &datagrams {
        assert!(d.len() <= 100, "{} bytes: {d}", d.len());
        for line in d.split('\n') {
            assert_eq!(line, format!("metric.{seen:04}:{seen}|c"));
            seen += 1;
        }
    }
    assert_eq!(seen, 1000);
    let s = client.stats();
    assert_eq!(s.sent_datagrams, datagrams.len() as u64);
    assert_eq!(s.sent_lines, 1000);
    // Greedy packing: lines of 17-19 bytes, so 5 per 100-byte datagram.
    assert_eq!(datagrams.len(), 200);
}

#[test]
fn an_over_long_metric_goes_alone_and_is_counted() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .max_payload(64)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let long = "x".repeat(300);
    client.incr("a").unwrap();
    client.incr(&long).unwrap();
    client.incr("b").unwrap();
    client.flush().unwrap();
    assert_eq!(
        daemon.datagrams(QUIET),
        [
            "a:1|c".to_string(),
            format!("{long}:1|c"),
            "b:1|c".to_string()
        ]
    );
    let s = client.stats();
    assert_eq!((s.oversized, s.spilled, s.sent_lines), (1, 1, 3));
}

#[test]
fn drop_flushes_even_with_a_full_queue() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .queue_capacity(8)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..100_000 {
        match client.count("n", i) {
            Ok(()) => accepted += 1,
            Err(MetricError::QueueFull) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let stats = client.stats();
    assert_eq!(stats.accepted, accepted);
    assert_eq!(stats.dropped, refused);
    assert!(
        refused > 0,
        "a capacity-8 queue must overflow under 100k metrics"
    );
    drop(client);
    assert_eq!(
        daemon.lines(QUIET).len() as u64,
        accepted,
        "everything accepted is sent by drop"
    );
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_evictions() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .queue_capacity(4)
        .overflow_policy(OverflowPolicy::DropOldest)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..10_000 {
        client.count("n", i).unwrap();
    }
    let stats = client.stats();
    client.flush().unwrap();
    let lines = daemon.lines(QUIET);
    assert_eq!(lines.last().map(String::as_str), Some("n:9999|c"));
    assert_eq!(stats.accepted, 10_000);
    let after = client.stats();
    assert_eq!(after.sent_lines + after.dropped, 10_000);
    assert_eq!(lines.len() as u64, after.sent_lines);
}

#[test]
fn block_policy_loses_nothing() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .queue_capacity(4)
        .overflow_policy(OverflowPolicy::Block { timeout: None })
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    // Rather few: a blocking sender outruns the receiving socket's buffer otherwise.
    for i in 0..2000 {
        client.count("n", i).unwrap();
    }
    client.flush().unwrap();
    let s = client.stats();
    assert_eq!((s.accepted, s.dropped, s.sent_lines), (2000, 0, 2000));
    assert_eq!(daemon.lines(QUIET).len(), 2000);
}

#[test]
fn many_threads_one_client_every_metric_arrives() {
    let daemon = Daemon::new();
    let client = daemon.client().queue_capacity(1 << 14).build().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    client.count(&format!("t{t}"), i).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    client.flush().unwrap();
    let mut sums: HashMap<String, i64> = HashMap::new();
    for line in daemon.lines(QUIET) {
        let (name, rest) = line.split_once(':').unwrap();
        let v: i64 = rest.strip_suffix("|c").unwrap().parse().unwrap();
        *sums.entry(name.to_string()).or_default() += v;
    }
    for t in 0..4 {
        assert_eq!(sums[&format!("t{t}")], 1999 * 2000 / 2);
    }
}

#[test]
fn aggregation_sums_counters_keeps_last_gauge_dedups_sets() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .aggregate(true)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    for _ in 0..1000 {
        client.incr("hits").unwrap();
        client.set("users", "alice").unwrap();
    }
    client.set("users", "bob").unwrap();
    client.gauge("temp", 20.0).unwrap();
    client.gauge("temp", 21.0).unwrap();
    client.gauge_delta("temp", -0.5).unwrap();
    client.timing_ms("lat", 1.0).unwrap();
    client.flush().unwrap();
    let mut lines = daemon.lines(QUIET);
    lines.sort();
    assert_eq!(
        lines,
        [
            "hits:1000|c",
            "lat:1|ms",
            "temp:20.5|g",
            "users:alice|s",
            "users:bob|s"
        ]
    );
    let s = client.stats();
    assert_eq!(s.aggregated, (2004, 4));
    assert_eq!(s.sent_lines, 5);
}

#[test]
fn client_side_sampling_sends_about_the_rate_and_marks_it() {
    let daemon = Daemon::new();
    let client = daemon.client().queue_capacity(1 << 14).build().unwrap();
    for _ in 0..10_000 {
        client.send(Metric::count("s", 1).sample_rate(0.1)).unwrap();
    }
    client.flush().unwrap();
    let lines = daemon.lines(QUIET);
    assert!(lines.iter().all(|l| l == "s:1|c|@0.1"));
    let s = client.stats();
    assert_eq!(s.accepted + s.sampled_out, 10_000);
    assert_eq!(lines.len() as u64, s.accepted);
    // Binomial(10000, 0.1): mean 1000, sd 30; 8 sd either side.
    assert!((760..=1240).contains(&lines.len()), "{} sent", lines.len());
}

#[test]
fn refusals_are_typed_and_counted() {
    let daemon = Daemon::new();
    let client = daemon.client().build().unwrap();
    assert!(matches!(
        client.count("a:b", 1),
        Err(MetricError::ReservedByte { .. })
    ));
    assert!(matches!(
        client.gauge("g", f64::NAN),
        Err(MetricError::NotFinite)
    ));
    assert!(matches!(
        client.distribution("d", 1.0),
        Err(MetricError::Unsupported { .. })
    ));
    assert_eq!(client.stats().invalid, 3);
    client.flush().unwrap();
    assert!(
        daemon.datagrams(QUIET).is_empty(),
        "nothing malformed on the wire"
    );
}

#[test]
fn timers_time_and_guard() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let v = client.time("closure", || {
        std::thread::sleep(Duration::from_millis(5));
        7
    });
    assert_eq!(v, 7);
    {
        let _guard = client.timer("guard");
        std::thread::sleep(Duration::from_millis(5));
    }
    client.timer("cancelled").cancel();
    client.flush().unwrap();
    let lines = daemon.lines(QUIET);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, name) in lines.iter().zip(["closure", "guard"]) {
        let ms: f64 = line
            .strip_prefix(&format!("{name}:"))
            .and_then(|r| r.strip_suffix("|ms"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((5.0..1000.0).contains(&ms), "{line}");
    }
}

#[test]
fn unix_datagram_socket_and_dogstatsd_extras() {
    let dir = std::env::temp_dir().join(format!("volley-statsd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dsd.sock");
    let _ = std::fs::remove_file(&path);
    let daemon = UnixDatagram::bind(&path).unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let client = Client::builder(&format!("unix://{}", path.display()))
        .flavour(Flavour::DogStatsd)
        .tag("env", "test")
        .build()
        .unwrap();
    client.distribution("d", 2.5).unwrap();
    client
        .event(&volley::statsd::Event::new("up", "all good"))
        .unwrap();
    client.flush().unwrap();
    let mut buf = [0u8; 2048];
    let n = daemon.recv(&mut buf).unwrap();
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        "d:2.5|d|#env:test\n_e{2,8}:up|all good|#env:test"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn send_errors_reach_the_handler_and_are_counted() {
    let missing =
        std::env::temp_dir().join(format!("volley-statsd-missing-{}.sock", std::process::id()));
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let client = Client::builder(&format!("unix://{}", missing.display()))
        .error_handler(move |e| {
            seen2.fetch_add(e.lines, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    client.incr("a").unwrap();
    client.incr("b").unwrap();
    client.flush().unwrap();
    let s = client.stats();
    assert_eq!((s.send_errors, s.lost_lines, s.sent_lines), (1, 2, 0));
    assert_eq!(seen.load(Ordering::Relaxed), 2);
}

#[test]
fn bad_addresses_and_options_fail_the_build() {
    assert!(Client::builder("no-such-host.invalid:8125")
        .build()
        .is_err());
    assert!(Client::builder("127.0.0.1:8125")
        .max_payload(0)
        .build()
        .is_err());
    assert!(Client::builder("127.0.0.1:8125")
        .queue_capacity(0)
        .build()
        .is_err());
    assert!(Client::builder("127.0.0.1:8125")
        .prefix("a|b")
        .build()
        .is_err());
    assert!(Client::builder("127.0.0.1:8125")
        .flavour(Flavour::Telegraf)
        .tag("bare", "")
        .build()
        .is_err());
}

#[test]
fn buffer_policy_holds_a_burst_beside_the_queue() {
    let daemon = Daemon::new();
    let client = daemon
        .client()
        .queue_capacity(4)
        .overflow_policy(OverflowPolicy::Buffer { max_bytes: 1 << 20 })
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut refused = 0u64;
    for i in 0..3000 {
        if client.count("n", i).is_err() {
            refused += 1;
        }
    }
    let s = client.stats();
    assert_eq!(s.accepted + s.dropped, 3000);
    assert_eq!(s.dropped, refused);
    client.flush().unwrap();
    let lines = daemon.lines(QUIET);
    assert_eq!(lines.len() as u64, s.accepted);
    // In order: the overflow queue is drained after the ring, oldest first.
    let values: Vec<i64> = lines
        .iter()
        .map(|l| {
            l.strip_prefix("n:")
                .unwrap()
                .strip_suffix("|c")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "out of order");
}
