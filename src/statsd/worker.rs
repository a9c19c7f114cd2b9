//! The background sender: drains the ring, aggregates (optionally), packs datagrams and
//! sends them on size, on the flush interval, on `flush()` and at shutdown.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::aggregate::Aggregator;
use super::client::{ErrorHandler, Shared, Unit};
use super::error::SendError;
use super::packer::{Datagram, Packer};
use super::Flavour;
use crate::ring::Consumer;

/// Where datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Udp(SocketAddr),
    Unix(PathBuf),
}

enum Transport {
    Udp(UdpSocket),
    /// Unbound, addressed per send: the daemon may (re)create its socket file at any time.
    Unix(UnixDatagram, PathBuf),
}

impl Transport {
    fn open(target: Target) -> io::Result<Transport> {
        match target {
            Target::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal address")
                } else {
                    "[::]:0".parse().expect("literal address")
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                Ok(Transport::Udp(socket))
            }
            Target::Unix(path) => Ok(Transport::Unix(UnixDatagram::unbound()?, path)),
        }
    }

    fn send(&self, payload: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Udp(s) => s.send(payload),
            Transport::Unix(s, path) => s.send_to(payload, path),
        }
    }
}

/// Lines per drain pass before the thread looks at its clock and flush requests again.
const DRAIN_BATCH: usize = 256;

/// Everything but the ring consumer, so the consumer can pop into it.
struct Sink {
    transport: Transport,
    packer: Packer,
    aggregator: Option<Aggregator>,
    shared: Arc<Shared>,
    handler: Option<ErrorHandler>,
}

impl Sink {
    fn send(
        transport: &Transport,
        shared: &Shared,
        handler: &Option<ErrorHandler>,
        d: Datagram<'_>,
    ) {
        let ordering = Ordering::Relaxed;
        if d.oversized {
            shared.oversized.fetch_add(1, ordering);
        }
        match transport.send(d.payload) {
            Ok(_) => {
                shared.sent_datagrams.fetch_add(1, ordering);
                shared.sent_lines.fetch_add(d.lines, ordering);
                shared
                    .sent_bytes
                    .fetch_add(d.payload.len() as u64, ordering);
            }
            Err(error) => {
                shared.send_errors.fetch_add(1, ordering);
                shared.lost_lines.fetch_add(d.lines, ordering);
                if let Some(h) = handler {
                    h(&SendError {
                        error,
                        bytes: d.payload.len(),
                        lines: d.lines,
                    });
                }
            }
        }
    }

    fn take(&mut self, unit: &[u8]) {
        if let Some(agg) = &mut self.aggregator {
            if let Some(lines) = agg.add(unit) {
                self.shared
                    .aggregated_in
                    .fetch_add(lines, Ordering::Relaxed);
                return;
            }
        }
        let (transport, shared, handler) = (&self.transport, &*self.shared, &self.handler);
        self.packer
            .add(unit, &mut |d| Sink::send(transport, shared, handler, d));
    }

    fn flush(&mut self) {
        let (transport, shared, handler) = (&self.transport, &*self.shared, &self.handler);
        let packer = &mut self.packer;
        let mut emit = |d: Datagram<'_>| Sink::send(transport, shared, handler, d);
        if let Some(agg) = &mut self.aggregator {
            if !agg.is_empty() {
                let lines = agg.drain(&mut |unit| packer.add(unit, &mut emit));
                shared.aggregated_out.fetch_add(lines, Ordering::Relaxed);
            }
        }
        packer.flush(&mut emit);
    }
}

pub(crate) struct Worker {
    consumer: Consumer<Unit>,
    sink: Sink,
    staged: Staged,
    interval: Duration,
}

/// The lines of one drain pass, copied out of their ring slots so the slots are freed
/// before anything is sent: a send from inside the pop would keep a slot claimed for a
/// system call. Copying a line's used bytes costs less than moving its 248-byte unit.
#[derive(Default)]
struct Staged {
    bytes: Vec<u8>,
    /// Where each unit ends in `bytes`.
    ends: Vec<usize>,
}

impl Staged {
    fn push(&mut self, unit: &[u8]) {
        self.bytes.extend_from_slice(unit);
        self.ends.push(self.bytes.len());
    }

    /// Hands every staged unit to `sink`, in order, and empties the stage.
    fn drain_into(&mut self, sink: &mut Sink) {
        let mut start = 0;
        for &end in &self.ends {
            sink.take(&self.bytes[start..end]);
            start = end;
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

impl Worker {
    pub(crate) fn new(
        target: Target,
        consumer: Consumer<Unit>,
        shared: Arc<Shared>,
        max_payload: usize,
        interval: Duration,
        aggregate: Option<Flavour>,
        handler: Option<ErrorHandler>,
    ) -> io::Result<Worker> {
        Ok(Worker {
            consumer,
            sink: Sink {
                transport: Transport::open(target)?,
                packer: Packer::new(max_payload),
                aggregator: aggregate.map(Aggregator::new),
                shared,
                handler,
            },
            staged: Staged {
                bytes: Vec::with_capacity(DRAIN_BATCH * 64),
                ends: Vec::with_capacity(DRAIN_BATCH),
            },
            interval,
        })
    }

    /// Pops what is there (bounded, so a flood cannot starve the clock checks).
    fn drain(&mut self) -> usize {
        let mut total = 0;
        loop {
            let staged = &mut self.staged;
            let n = self
                .consumer
                .pop_batch_ref(DRAIN_BATCH, |unit| staged.push(unit.bytes()));
            staged.drain_into(&mut self.sink);
            total += n;
            if n < DRAIN_BATCH || total >= 16 * DRAIN_BATCH {
                return total;
            }
        }
    }

    fn signal_flushed(&self, generation: u64) {
        let shared = &*self.sink.shared;
        let mut done = shared.flush_done.lock().unwrap_or_else(|p| p.into_inner());
        *done = (*done).max(generation);
        shared.flushed.notify_all();
    }

    pub(crate) fn run(mut self) {
        let shared = self.sink.shared.clone();
        let _alive = AliveGuard(shared.clone());
        let mut next_flush = Instant::now() + self.interval;
        let mut answered = 0;
        loop {
            // Read the requests before draining: whatever was queued before a request
            // (or before shutdown) is then drained in this pass.
            let shutdown = shared.shutdown.load(Ordering::SeqCst);
            let requested = shared.flush_requested.load(Ordering::SeqCst);
            let mut drained = self.drain();
            if shutdown || requested != answered {
                // Everything queued before the request is at most one ring's worth.
                let mut total = drained;
                let capacity = self.consumer.capacity();
                while drained > 0 && total < capacity {
                    drained = self.drain();
                    total += drained;
                }
            }
            let now = Instant::now();
            if shutdown || requested != answered || now >= next_flush {
                self.sink.flush();
                next_flush = now + self.interval;
            }
            if requested != answered {
                answered = requested;
                self.signal_flushed(answered);
            }
            if shutdown {
                break;
            }
            if drained == 0 {
                shared.asleep.store(true, Ordering::SeqCst);
                let idle = self.consumer.is_empty()
                    && shared.flush_requested.load(Ordering::SeqCst) == answered
                    && !shared.shutdown.load(Ordering::SeqCst);
                if idle {
                    thread::park_timeout(next_flush.saturating_duration_since(Instant::now()));
                }
                shared.asleep.store(false, Ordering::SeqCst);
            }
        }
        self.signal_flushed(u64::MAX);
    }
}

/// Marks the sender gone however `run` ends (even by a panic), so `flush()` callers stop
/// waiting.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.worker_alive.store(false, Ordering::Release);
        let _guard = self.0.flush_done.lock();
        self.0.flushed.notify_all();
    }
}
