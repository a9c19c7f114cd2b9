//! Webhook delivery throughput and `emit` cost, each beside a baseline measured in the
//! same run:
//!
//! ```text
//! cargo bench --bench webhook
//! ```
//!
//! * deliveries/s to local keep-alive receivers (std TCP, one thread per connection,
//!   answering 204 at once), with 1 endpoint (concurrency 1: ordered) and with 16
//!   endpoints (default 4 workers). Baseline: raw `ureq` POSTs of the same body in a loop,
//!   on as many threads, without signing, queueing or scheduling.
//! * `emit` on the calling thread (serialize, id, timestamp, queue push), median and p99
//!   of single calls. Baseline: `serde_json::to_string` of the same data plus a
//!   `crossbeam-channel` send, the least any queueing emitter must do.
//!
//! Environment: `WEBHOOK_BENCH_N` (deliveries per run, default 20000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use volley::webhook::{Emitter, Endpoint, MemoryDeadLetters, Secret};

/// A receiver that only counts: parse the request, answer 204, keep the connection.
struct Counter {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
}

impl Counter {
    fn start() -> Counter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let count = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = count.clone();
                thread::spawn(move || serve(stream, &count));
            }
        });
        Counter { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

fn serve(stream: TcpStream, count: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        count.fetch_add(1, Ordering::Relaxed);
        if writer
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn data(i: u64) -> serde_json::Value {
    serde_json::json!({"host": "node-7", "metric": "cpu.load", "value": 0.93, "seq": i})
}

/// Volley: `n` events to each of `endpoints` receivers; deliveries per second.
fn volley_deliveries(endpoints: usize, n: u64) -> f64 {
    let receivers: Vec<Counter> = (0..endpoints).map(|_| Counter::start()).collect();
    let dead = MemoryDeadLetters::new();
    let mut builder = Emitter::builder()
        .queue_capacity(1 << 16)
        .dead_letters(dead.clone());
    for r in &receivers {
        builder = builder.endpoint(Endpoint::new(r.url(), Secret::generate()));
    }
    let emitter = builder.build().unwrap();
    let start = Instant::now();
    for i in 0..n {
        emitter.emit("metric.threshold", &data(i)).unwrap();
    }
    assert!(emitter.flush(Duration::from_secs(600)), "not delivered");
    let elapsed = start.elapsed();
    let delivered: u64 = emitter.stats().endpoints.iter().map(|e| e.delivered).sum();
    let received: u64 = receivers
        .iter()
        .map(|r| r.received.load(Ordering::Relaxed))
        .sum();
    assert_eq!(delivered, n * endpoints as u64);
    assert_eq!(received, delivered);
    assert!(dead.is_empty());
    emitter.shutdown(Duration::from_secs(1));
    delivered as f64 / elapsed.as_secs_f64()
}

/// Baseline: raw ureq POSTs (same body size, no signing/queue), `threads` threads,
/// each cycling over the receivers.
fn raw_posts(endpoints: usize, threads: usize, n: u64) -> f64 {
    let receivers: Vec<Counter> = (0..endpoints).map(|_| Counter::start()).collect();
    let urls: Vec<String> = receivers.iter().map(Counter::url).collect();
    let body = format!(
        r#"{{"type":"metric.threshold","timestamp":"2026-11-25T10:54:56.123456Z","data":{}}}"#,
        data(0)
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections_per_host(threads.max(4))
        .max_idle_connections(threads.max(4) * endpoints)
        // The same socket timeouts as the emitter's.
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_per_read(Some(Duration::from_secs(15)))
        .timeout_per_write(Some(Duration::from_secs(15)))
        .build()
        .into();
    let total = n * endpoints as u64;
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            let (agent, urls, body) = (agent.clone(), &urls, &body);
            s.spawn(move || {
                let mine = total / threads as u64 + u64::from((t as u64) < total % threads as u64);
                for i in 0..mine {
                    let url = &urls[(i as usize * threads + t) % urls.len()];
                    let mut r = agent
                        .post(url)
                        .header("content-type", "application/json")
                        .send(body.as_bytes())
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 204);
                    let _ = r.body_mut().read_to_vec();
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let received: u64 = receivers
        .iter()
        .map(|r| r.received.load(Ordering::Relaxed))
        .sum();
    assert_eq!(received, total);
    total as f64 / elapsed.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Per-call time of `emit`, while the emitter delivers in the background.
fn emit_cost(n: u64) -> (Duration, Duration) {
    let receiver = Counter::start();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url(), Secret::generate()).concurrency(4))
        .queue_capacity(1 << 17)
        .build()
        .unwrap();
    let payloads: Vec<serde_json::Value> = (0..n).map(data).collect();
    let mut times = Vec::with_capacity(n as usize);
    for p in &payloads {
        let t = Instant::now();
        let id = emitter.emit("metric.threshold", p);
        times.push(t.elapsed());
        id.unwrap();
    }
    assert!(emitter.flush(Duration::from_secs(600)));
    emitter.shutdown(Duration::from_secs(1));
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn baseline_emit_cost(n: u64) -> (Duration, Duration) {
    let (tx, rx) = crossbeam_channel::bounded::<String>(1 << 17);
    let drain = thread::spawn(move || rx.iter().count());
    let payloads: Vec<serde_json::Value> = (0..n).map(data).collect();
    let mut times = Vec::with_capacity(n as usize);
    for p in &payloads {
        let t = Instant::now();
        let s = serde_json::to_string(p).unwrap();
        tx.send(s).unwrap();
        times.push(t.elapsed());
    }
    drop(tx);
    assert_eq!(drain.join().unwrap() as u64, n);
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported here.
    let n: u64 = std::env::var("WEBHOOK_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!("webhook benchmark: {n} deliveries per run, loopback, keep-alive receivers\n");
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "deliveries/s", "volley", "raw ureq", "ratio"
    );
    let v1 = volley_deliveries(1, n);
    let b1 = raw_posts(1, 1, n);
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>7.2}x",
        "1 endpoint (concurrency 1, ordered)",
        v1,
        b1,
        v1 / b1
    );
    let per = (n / 16).max(1);
    let v16 = volley_deliveries(16, per);
    let b16 = raw_posts(16, 4, per);
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>7.2}x",
        "16 endpoints (4 workers; baseline 4 threads)",
        v16,
        b16,
        v16 / b16
    );
    println!("target: >= 5,000 deliveries/s\n");

    let (m, p99) = emit_cost(n);
    let (bm, bp99) = baseline_emit_cost(n);
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "emit on the calling thread", "volley", "json+channel", "ratio"
    );
    println!(
        "{:<44} {:>12.0}ns {:>12.0}ns {:>7.2}x",
        "median",
        m.as_nanos() as f64,
        bm.as_nanos() as f64,
        m.as_nanos() as f64 / bm.as_nanos().max(1) as f64
    );
    println!(
        "{:<44} {:>12.0}ns {:>12.0}ns {:>7.2}x",
        "p99",
        p99.as_nanos() as f64,
        bp99.as_nanos() as f64,
        p99.as_nanos() as f64 / bp99.as_nanos().max(1) as f64
    );
    println!("target: emit median <= 2 us");
}
