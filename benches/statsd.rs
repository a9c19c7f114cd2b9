//! `cargo bench --bench statsd`
//!
//! The StatsD client (`volley::statsd::Client`) side by side in one run with the `cadence`
//! crate's recommended non-blocking setup, `StatsdClient` over `QueuingMetricSink` over
//! `BufferedUdpMetricSink` (cadence's 512-byte default buffer). Both send to a UDP socket
//! on loopback that nobody reads (the sender's work is what is measured; the kernel
//! discards what does not fit the receive buffer).
//!
//! Groups:
//! * `caller_no_tags`, `caller_tags`: the cost on the calling thread of one counter
//!   (`requests:1|c`, or with three tags in DogStatsD syntax: volley's DogStatsd flavour,
//!   cadence's default). Timed in runs of 1000 calls; between runs (untimed) the client is
//!   drained (volley `flush()`, cadence: until its worker has emitted everything), so
//!   neither queue is ever full and no metric is dropped: this is the cost of a metric
//!   that is accepted. The background threads run during the timing, as in a service.
//! * `end_to_end`: 100,000 counters from one thread until the last datagram is handed to
//!   the socket, lossless on both sides: volley with `OverflowPolicy::Block` (capacity
//!   4096), cadence with its default unbounded queue. Reported in metrics per second.
//!
//! At the end a summary prints medians measured again in this run (301 runs of 1000
//! calls per contestant, in blocks), as ratios. The
//! machine has 2 cores and each client has a sender thread, so the caller and the sender
//! share them with whatever else runs. Takes about 1 minute.

use std::hint::black_box;
use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, MetricSink, QueuingMetricSink, StatsdClient};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use volley::ring::OverflowPolicy;
use volley::statsd::{Client, Flavour, Metric};

const RUN: u64 = 1000;
const END_TO_END: u64 = 100_000;
const TAGS: [(&str, &str); 3] = [("route", "/login"), ("method", "GET"), ("code", "200")];

fn sink_socket() -> (UdpSocket, String) {
    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = daemon.local_addr().unwrap().to_string();
    (daemon, addr)
}

fn volley_client(addr: &str, policy: OverflowPolicy) -> Client {
    Client::builder(addr)
        .prefix("bench")
        .flavour(Flavour::DogStatsd)
        .overflow_policy(policy)
        .build()
        .unwrap()
}

/// Counts what cadence's worker has handed to the UDP sink, so a run can wait until
/// everything was emitted (cadence's own `drained` counts before the emit).
struct EmitCounter<S> {
    inner: S,
    emitted: Arc<AtomicU64>,
}

impl<S: MetricSink> MetricSink for EmitCounter<S> {
    fn emit(&self, metric: &str) -> io::Result<usize> {
        let r = self.inner.emit(metric);
        self.emitted.fetch_add(1, Ordering::Release);
        r
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Cadence {
    client: StatsdClient,
    emitted: Arc<AtomicU64>,
    submitted: u64,
}

impl Cadence {
    fn new(addr: &str, capacity: Option<usize>) -> Cadence {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp = BufferedUdpMetricSink::from(addr, socket).unwrap();
        let emitted = Arc::new(AtomicU64::new(0));
        let counted = EmitCounter {
            inner: udp,
            emitted: emitted.clone(),
        };
        let queuing = match capacity {
            Some(c) => QueuingMetricSink::with_capacity(counted, c),
            None => QueuingMetricSink::from(counted),
        };
        Cadence {
            client: StatsdClient::from_sink("bench", queuing),
            emitted,
            submitted: 0,
        }
    }

    /// Waits until the worker has emitted everything submitted, then flushes the buffer.
    fn drain(&mut self) {
        while self.emitted.load(Ordering::Acquire) < self.submitted {
            std::thread::yield_now();
        }
        self.client.flush().unwrap();
    }
}

/// Times `RUN`-call runs of `call`, draining between runs (untimed).
fn timed_runs(iters: u64, mut call: impl FnMut(), mut drain: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(RUN);
        let start = Instant::now();
        for _ in 0..n {
            call();
        }
        total += start.elapsed();
        drain();
        left -= n;
    }
    total
}

fn volley_untagged(c: &Client) {
    c.count(black_box("requests"), 1).unwrap();
}

fn volley_tagged(c: &Client) {
    c.send(Metric::count(black_box("requests"), 1).tags(&TAGS))
        .unwrap();
}

fn cadence_untagged(c: &mut Cadence) {
    c.client.count(black_box("requests"), 1).unwrap();
    c.submitted += 1;
}

fn cadence_tagged(c: &mut Cadence) {
    c.client
        .count_with_tags(black_box("requests"), 1)
        .with_tag(TAGS[0].0, TAGS[0].1)
        .with_tag(TAGS[1].0, TAGS[1].1)
        .with_tag(TAGS[2].0, TAGS[2].1)
        .try_send()
        .unwrap();
    c.submitted += 1;
}

fn caller(c: &mut Criterion, name: &str, tagged: bool) {
    let (_daemon, addr) = sink_socket();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    let client = volley_client(&addr, OverflowPolicy::DropNewest);
    g.bench_function("volley", |b| {
        b.iter_custom(|iters| {
            let before = client.stats().dropped;
            let call = || {
                if tagged {
                    volley_tagged(&client)
                } else {
                    volley_untagged(&client)
                }
            };
            let t = timed_runs(iters, call, || client.flush().unwrap());
            assert_eq!(client.stats().dropped, before, "a run overflowed the queue");
            t
        })
    });
    let mut cadence = Cadence::new(&addr, Some(1 << 16));
    g.bench_function("cadence", |b| {
        b.iter_custom(|iters| {
            let cadence = std::cell::RefCell::new(&mut cadence);
            timed_runs(
                iters,
                || {
                    let mut c = cadence.borrow_mut();
                    if tagged {
                        cadence_tagged(&mut c)
                    } else {
                        cadence_untagged(&mut c)
                    }
                },
                || cadence.borrow_mut().drain(),
            )
        })
    });
    g.finish();
}

fn caller_no_tags(c: &mut Criterion) {
    caller(c, "caller_no_tags", false);
}

fn caller_tags(c: &mut Criterion) {
    caller(c, "caller_tags", true);
}

/// One lossless end-to-end run of `END_TO_END` metrics through volley.
fn volley_end_to_end(addr: &str) -> Duration {
    let client = volley_client(addr, OverflowPolicy::Block { timeout: None });
    let start = Instant::now();
    for _ in 0..END_TO_END {
        volley_untagged(&client);
    }
    client.flush().unwrap();
    let elapsed = start.elapsed();
    let s = client.stats();
    assert_eq!((s.sent_lines, s.dropped), (END_TO_END, 0));
    elapsed
}

/// The same through cadence.
fn cadence_end_to_end(addr: &str) -> Duration {
    let mut cadence = Cadence::new(addr, None);
    let start = Instant::now();
    for _ in 0..END_TO_END {
        cadence_untagged(&mut cadence);
    }
    cadence.drain();
    start.elapsed()
}

fn end_to_end(c: &mut Criterion) {
    let (_daemon, addr) = sink_socket();
    let mut g = c.benchmark_group("end_to_end");
    g.throughput(Throughput::Elements(END_TO_END));
    g.sample_size(10);
    g.bench_function("volley", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| volley_end_to_end(&addr)).sum())
    });
    g.bench_function("cadence", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| cadence_end_to_end(&addr)).sum())
    });
    g.finish();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median and the 10th and 90th percentiles: per-run costs on a shared 2-vCPU host
/// spread widely (and often fall into two groups), and the median alone hides how much.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v[(v.len() - 1) * q / 100];
    (at(50), at(10), at(90))
}

/// Medians measured again here, printed side by side as ratios.
fn summary(_: &mut Criterion) {
    let (_daemon, addr) = sink_socket();
    let per_call = |d: Duration| d.as_nanos() as f64 / RUN as f64;
    let client = volley_client(&addr, OverflowPolicy::DropNewest);
    let mut cadence = Cadence::new(&addr, Some(1 << 16));
    let rounds = 301;
    let mut rows = Vec::new();
    for tagged in [false, true] {
        // One contestant's runs in a block, then the other's: interleaving them makes
        // each run start with caches the other client has just evicted.
        let v: Vec<f64> = (0..rounds)
            .map(|_| {
                per_call(timed_runs(
                    RUN,
                    || {
                        if tagged {
                            volley_tagged(&client)
                        } else {
                            volley_untagged(&client)
                        }
                    },
                    || client.flush().unwrap(),
                ))
            })
            .collect();
        let k: Vec<f64> = (0..rounds)
            .map(|_| {
                let cad = std::cell::RefCell::new(&mut cadence);
                per_call(timed_runs(
                    RUN,
                    || {
                        let mut c = cad.borrow_mut();
                        if tagged {
                            cadence_tagged(&mut c)
                        } else {
                            cadence_untagged(&mut c)
                        }
                    },
                    || cad.borrow_mut().drain(),
                ))
            })
            .collect();
        rows.push((tagged, spread(v), spread(k)));
    }
    let mut v = Vec::new();
    let mut k = Vec::new();
    for _ in 0..9 {
        v.push(END_TO_END as f64 / volley_end_to_end(&addr).as_secs_f64());
        k.push(END_TO_END as f64 / cadence_end_to_end(&addr).as_secs_f64());
    }
    let (vt, kt) = (median(v), median(k));
    println!("\nstatsd summary (medians over {rounds} runs of {RUN} calls; end-to-end over 9 runs of {END_TO_END})");
    println!(
        "{:<34} {:>12} {:>12} {:>16}",
        "measurement", "volley", "cadence", "cadence/volley"
    );
    for (tagged, (v, v10, v90), (k, k10, k90)) in rows {
        let name = if tagged {
            "caller ns/metric, 3 tags"
        } else {
            "caller ns/metric, no tags"
        };
        println!("{name:<34} {v:>12.1} {k:>12.1} {:>15.2}x", k / v);
        let range = |lo: f64, hi: f64| format!("{lo:.1}-{hi:.1}");
        println!(
            "{:<34} {:>12} {:>12}",
            "  (10th-90th percentile of runs)",
            range(v10, v90),
            range(k10, k90)
        );
    }
    println!(
        "{:<34} {:>12.0} {:>12.0} {:>15.2}x (volley/cadence)",
        "end-to-end metrics/s",
        vt,
        kt,
        vt / kt
    );
    println!("targets: caller no tags <= 50 ns median; end-to-end >= 2x cadence");
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = caller_no_tags, caller_tags, end_to_end, summary
}
criterion_main!(benches);
