//! Reporting volley sockets' own counters through a StatsD [`Client`]: drops, reconnects,
//! protocol errors, traffic and queue depths, under a prefix of your choice.
//!
//! Socket counters only grow, so they are sent as StatsD counters of the change since the
//! last report (the daemon sums them per flush); peers and queue depths are gauges.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{Client, Metric, MetricError};
use crate::ring::RingStats;
use crate::socket::{Publisher, SocketStats, Subscriber};

/// Sends sockets' [`SocketStats`] as metrics named `PREFIX.SOCKET.FIELD`:
/// counters `messages_out bytes_out messages_in bytes_in dropped reconnects
/// protocol_errors oversized blocked blocked_ms` (waits under Block, and their time in
/// milliseconds: sends at a sending socket, read pauses at a receiving one), gauges `peers`, `queue_depth` (and `queue_depth_max` over
/// a publisher's peers).
///
/// ```no_run
/// use volley::socket::Publisher;
/// use volley::statsd::{Client, SocketStatsReporter};
/// let mut publisher = Publisher::new()?;
/// let mut reporter = SocketStatsReporter::new(Client::new("127.0.0.1:8125")?, "volley");
/// reporter.report_publisher("quotes", &mut publisher)?; // call it every few seconds
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SocketStatsReporter {
    client: Client,
    prefix: String,
    previous: HashMap<String, SocketStats>,
    name: String,
}

impl SocketStatsReporter {
    /// Reports through `client` under `prefix` (empty for none).
    pub fn new(client: Client, prefix: &str) -> SocketStatsReporter {
        SocketStatsReporter {
            client,
            prefix: prefix.trim_end_matches('.').to_string(),
            previous: HashMap::new(),
            name: String::new(),
        }
    }

    /// The client reports go through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn name(&mut self, socket: &str, field: &str) -> &str {
        self.name.clear();
        for part in [self.prefix.as_str(), socket, field] {
            if !part.is_empty() {
                if !self.name.is_empty() {
                    self.name.push('.');
                }
                self.name.push_str(part);
            }
        }
        &self.name
    }

    fn counter(
        &mut self,
        socket: &str,
        field: &str,
        now: u64,
        before: u64,
    ) -> Result<(), MetricError> {
        // A counter that went backwards belongs to a new socket under the same name.
        let delta = if now >= before { now - before } else { now };
        if delta == 0 {
            return Ok(());
        }
        let client = self.client.clone();
        client.count(self.name(socket, field), delta.min(i64::MAX as u64) as i64)
    }

    fn gauge(&mut self, socket: &str, field: &str, value: u64) -> Result<(), MetricError> {
        let client = self.client.clone();
        client.send(Metric::gauge(self.name(socket, field), value as f64))
    }

    /// Reports one socket's counters (changes since the last report under `socket`).
    pub fn report(&mut self, socket: &str, stats: &SocketStats) -> Result<(), MetricError> {
        let before = self.previous.get(socket).cloned().unwrap_or_default();
        let pairs = [
            ("messages_out", stats.messages_out, before.messages_out),
            ("bytes_out", stats.bytes_out, before.bytes_out),
            ("messages_in", stats.messages_in, before.messages_in),
            ("bytes_in", stats.bytes_in, before.bytes_in),
            ("dropped", stats.dropped, before.dropped),
            ("reconnects", stats.reconnects, before.reconnects),
            (
                "protocol_errors",
                stats.protocol_errors,
                before.protocol_errors,
            ),
            ("oversized", stats.oversized, before.oversized),
            ("blocked", stats.blocked, before.blocked),
            (
                "blocked_ms",
                stats.blocked_time.as_millis() as u64,
                before.blocked_time.as_millis() as u64,
            ),
        ];
        let mut result = Ok(());
        for (field, now, then) in pairs {
            result = result.and(self.counter(socket, field, now, then));
        }
        result = result.and(self.gauge(socket, "peers", stats.peers));
        self.previous.insert(socket.to_string(), stats.clone());
        result
    }

    /// Reports a queue's depth as gauges `queue_depth` and `queue_capacity`.
    pub fn report_queue(&mut self, socket: &str, queue: &RingStats) -> Result<(), MetricError> {
        self.gauge(socket, "queue_depth", queue.len).and(self.gauge(
            socket,
            "queue_capacity",
            queue.capacity,
        ))
    }

    /// Reports a publisher: its counters, plus the summed and the largest depth of its
    /// per-peer queues.
    pub fn report_publisher(
        &mut self,
        socket: &str,
        publisher: &mut Publisher,
    ) -> Result<(), MetricError> {
        let stats = publisher.stats();
        let depths: Vec<u64> = publisher
            .peer_stats()
            .iter()
            .filter_map(|p| p.queue.map(|q| q.len))
            .collect();
        self.report(socket, &stats)
            .and(self.gauge(socket, "queue_depth", depths.iter().sum()))
            .and(self.gauge(
                socket,
                "queue_depth_max",
                depths.iter().copied().max().unwrap_or(0),
            ))
    }

    /// Reports a subscriber: its counters and its inbound queue.
    pub fn report_subscriber(
        &mut self,
        socket: &str,
        subscriber: &Subscriber,
    ) -> Result<(), MetricError> {
        self.report(socket, &subscriber.stats())
            .and(self.report_queue(socket, &subscriber.queue_stats()))
    }

    /// Calls `sample` with this reporter every `interval` on a thread of its own, until
    /// the returned handle is dropped or stopped. `sample` reaches the sockets however
    /// the application shares them (an `Arc<Mutex<Publisher>>`, a channel, ...).
    pub fn spawn_periodic(
        mut self,
        interval: Duration,
        mut sample: impl FnMut(&mut SocketStatsReporter) + Send + 'static,
    ) -> std::io::Result<PeriodicReporter> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = thread::Builder::new()
            .name("volley-statsd-report".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Acquire) {
                    sample(&mut self);
                    thread::park_timeout(interval);
                }
                // One last report, so what happened since the previous one is not lost.
                sample(&mut self);
            })?;
        Ok(PeriodicReporter {
            stop,
            thread: Some(thread),
        })
    }
}

/// The thread of [`SocketStatsReporter::spawn_periodic`]; dropping it stops the thread
/// after one last report.
#[derive(Debug)]
pub struct PeriodicReporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeriodicReporter {
    /// Stops the thread after one last report and waits for it.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for PeriodicReporter {
    fn drop(&mut self) {
        self.finish();
    }
}
