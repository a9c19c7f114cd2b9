//! [`Subscriber`]: receives the messages whose topic matches one of its prefixes.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::multicast::{self, MulticastReceiverStats};
use super::{
    check_capacity, Endpoint, Error, Message, RecvMode, SocketHandle, SocketOptions, SocketStats,
};
use crate::io::{lock, Command, Context, DirectConn, LazyNow, McastRx, Role};
use crate::proto::subscriptions::SubscriptionTable;
use crate::ring::{
    spsc, Consumer, OverflowPolicy, PopTimeoutError, RingConfig, RingStats, TryPopError,
    WaitStrategy,
};
use crate::wire::zmtp::SocketType;

/// How long a busy-polling receive spins before it starts yielding the CPU. Longer than
/// a loopback round trip, so a ping-pong spins through; short, because when the two
/// spinning ends share one core each hop waits this long for the other to run (at
/// 200 µs a whole run measured 295 µs p50).
const YIELD_AFTER: Duration = Duration::from_micros(50);

/// Messages a receive takes from the inbound ring at once when several wait there; the
/// rest wait in the socket for the next receives. The ring's capacity and overflow
/// policy bound what the I/O thread queues; these few are already the application's.
const RECV_BATCH: usize = 64;

/// Messages a busy-polling receive decodes from its TCP/IPC connections per poll (at
/// least one read's worth). A receiver that fell behind would otherwise decode up to
/// its queue capacity (megabytes of input and messages) before returning the first,
/// out of the cache, and fall further behind.
const DIRECT_READ_LIMIT: usize = 1024;

/// A SUB socket. It receives nothing until it subscribes; subscriptions are prefixes of
/// the first frame, counted (two `subscribe`s of one prefix need two `unsubscribe`s), and
/// re-sent to every peer after a reconnect.
///
/// Implementation notes: the I/O thread pushes received messages into one ring per
/// socket (capacity and policy from [`SocketOptions`]); `recv` pops from it (up to 64
/// waiting messages at once, returned one by one), waiting as [`RecvMode`] says. The I/O
/// thread never waits on this ring: under `OverflowPolicy::Block` a full ring pauses its
/// reading of the socket's connections instead (see [`SocketOptions::policy`]), and a
/// receive that makes room resumes it.
/// Multicast groups (`udp://`) filter by prefix here, at the subscriber; with
/// [`RecvMode::BusyPoll`] the receiving thread reads their sockets itself, so a datagram
/// reaches it without a thread hand-off.
pub struct Subscriber {
    handle: SocketHandle,
    inbound: Consumer<Message>,
    options: SocketOptions,
    /// This socket's subscriptions, for groups joined later.
    subscriptions: SubscriptionTable,
    groups: Vec<Arc<Mutex<McastRx>>>,
    /// Connections the I/O thread handed over for direct reads (BusyPoll).
    handed_over: Option<crossbeam_channel::Receiver<DirectConn>>,
    conns: Vec<DirectConn>,
    /// Messages this thread read itself (BusyPoll), in order, not yet returned.
    pending: VecDeque<Message>,
    /// Messages and bytes this thread read from the multicast groups itself.
    group_in: (u64, u64),
    /// `SocketShared::attached` when the hand-over channel was last drained.
    attached_seen: u64,
}

impl Subscriber {
    /// A subscriber with default options on the global context.
    pub fn new() -> Result<Subscriber, Error> {
        Subscriber::with_options(Context::global()?, SocketOptions::default())
    }

    /// A subscriber with `options` on `context`.
    pub fn with_options(context: &Context, options: SocketOptions) -> Result<Subscriber, Error> {
        Subscriber::open(context, options, SocketType::Sub)
    }

    /// The receiving socket of `socket_type` (SUB or PULL).
    pub(crate) fn open(
        context: &Context,
        options: SocketOptions,
        socket_type: SocketType,
    ) -> Result<Subscriber, Error> {
        check_capacity(&options)?;
        let pushes_back = match options.policy {
            OverflowPolicy::Block { timeout: None } => true,
            OverflowPolicy::Block { timeout: Some(_) } => {
                return Err(Error::InvalidOption(
                    "a receiving socket under Block holds its senders back for as long as \
                     its queue is full; how long they wait is their own policy's timeout: \
                     use Block { timeout: None } here"
                        .into(),
                ))
            }
            _ => false,
        };
        // The I/O thread pushes only into room it has seen (and holds the rest), so under
        // Block the ring itself never overflows; DropNewest keeps it from ever waiting.
        let ring_policy = if pushes_back {
            OverflowPolicy::DropNewest
        } else {
            options.policy
        };
        let wait = match options.recv_mode {
            RecvMode::Blocking => WaitStrategy::default(),
            RecvMode::BusyPoll => WaitStrategy::Yield,
        };
        let (producer, inbound) = spsc(
            options.queue_capacity,
            RingConfig::with_policy(ring_policy).wait(wait),
        );
        let (direct, handed_over) = match options.recv_mode {
            RecvMode::BusyPoll => {
                let (tx, rx) = crossbeam_channel::unbounded();
                (Some(tx), Some(rx))
            }
            RecvMode::Blocking => (None, None),
        };
        let handle = SocketHandle::open(
            context,
            Role::Subscriber {
                inbound: producer,
                direct,
            },
            socket_type,
            options.clone(),
        )?;
        Ok(Subscriber {
            handle,
            inbound,
            options,
            subscriptions: SubscriptionTable::new(),
            groups: Vec::new(),
            handed_over,
            conns: Vec::new(),
            pending: VecDeque::new(),
            group_in: (0, 0),
            attached_seen: 0,
        })
    }

    /// Listens on `endpoint` for publishers that connect, or joins a multicast group
    /// (`udp://GROUP:PORT?iface=ADDR`); returns the endpoint as bound.
    pub fn bind(&mut self, endpoint: &str) -> Result<Endpoint, Error> {
        if let Endpoint::Udp(udp) = endpoint.parse()? {
            return self.join(&udp);
        }
        self.handle.bind(endpoint)
    }

    /// Connects to a publisher, reconnecting with backoff whenever the connection is lost.
    /// A `udp://` endpoint joins the group, as `bind` does.
    pub fn connect(&mut self, endpoint: &str) -> Result<(), Error> {
        if let Endpoint::Udp(udp) = endpoint.parse()? {
            return self.join(&udp).map(drop);
        }
        self.handle.connect(endpoint)
    }

    fn join(&mut self, udp: &super::UdpEndpoint) -> Result<Endpoint, Error> {
        if self.options.holds_senders_back() {
            return Err(Error::InvalidOption(
                "a multicast group cannot be held back, so a socket under Block cannot \
                 join one: use DropNewest, DropOldest or Buffer"
                    .into(),
            ));
        }
        let (rx, joined) = multicast::join_rx(
            &self.handle.context,
            self.handle.id,
            udp,
            &self.options,
            self.subscriptions.clone(),
        )?;
        self.groups.push(rx);
        Ok(joined)
    }

    /// Adds a subscription to topics starting with `prefix` (empty: everything).
    /// Multicast groups apply it at once; TCP publishers when it reaches them.
    pub fn subscribe(&mut self, prefix: impl AsRef<[u8]>) -> Result<(), Error> {
        let prefix = prefix.as_ref();
        self.subscriptions.subscribe(prefix);
        for group in &self.groups {
            lock(group).subscriptions.subscribe(prefix);
        }
        self.handle.context.command(Command::Subscribe {
            id: self.handle.id,
            prefix: Bytes::copy_from_slice(prefix),
        })
    }

    /// Removes one subscription to `prefix`.
    pub fn unsubscribe(&mut self, prefix: impl AsRef<[u8]>) -> Result<(), Error> {
        let prefix = prefix.as_ref();
        if self.subscriptions.cancel(prefix) {
            for group in &self.groups {
                lock(group).subscriptions.cancel(prefix);
            }
        }
        self.handle.context.command(Command::Cancel {
            id: self.handle.id,
            prefix: Bytes::copy_from_slice(prefix),
        })
    }

    /// Whether this thread reads its sockets itself.
    fn reads_groups(&self) -> bool {
        self.options.recv_mode == RecvMode::BusyPoll
    }

    /// Reads every group this thread can lock now into `pending`. What the I/O thread
    /// already pushed into the ring is older than what this read finds, so it moves to
    /// `pending` first: one publisher's messages stay in order.
    fn read_groups(&mut self) {
        // Read only if something needs it: an empty poll of the groups does not.
        let mut clock = LazyNow::default();
        let limit = self.options.queue_capacity;
        self.read_conns(&mut clock, limit.min(DIRECT_READ_LIMIT));
        let (mut messages, mut bytes) = (0u64, 0u64);
        for group in &self.groups {
            let Ok(mut rx) = group.try_lock() else {
                continue; // the I/O thread is on it and will push what it reads
            };
            let pending = &mut self.pending;
            self.inbound.pop_batch(usize::MAX, |m| pending.push_back(m));
            rx.read(&mut clock, limit, &mut |m: Message| {
                messages += 1;
                bytes += m.byte_len() as u64;
                pending.push_back(m);
            });
        }
        // Counted in the handle (this thread is the only one that adds these), not with
        // two atomic adds per read; `stats` adds them in.
        self.group_in.0 += messages;
        self.group_in.1 += bytes;
    }

    /// Reads the TCP/IPC connections the I/O thread handed over, like the groups.
    fn read_conns(&mut self, clock: &mut LazyNow, limit: usize) {
        if let Some(handed_over) = &self.handed_over {
            // A channel poll on every poll of the groups cost about 70 instructions
            // (callgrind: 1.3 M over 18,781 polls); the I/O thread bumps the counter
            // after each hand-over.
            let attached = self.handle.shared.attached.load(Ordering::Acquire);
            if attached != self.attached_seen {
                self.attached_seen = attached;
                self.conns.extend(handed_over.try_iter());
            }
        }
        if self.conns.is_empty() {
            return;
        }
        let now = clock.now();
        let mut any_failed = false;
        let (mut total_messages, mut total_bytes) = (0u64, 0u64);
        let (pushes_back, shared) = (self.options.holds_senders_back(), &self.handle.shared);
        self.conns.retain(|conn| {
            let Ok(mut io) = conn.io.try_lock() else {
                return true; // the I/O thread is on it and will push what it reads
            };
            if io.closed {
                return false;
            }
            let pending = &mut self.pending;
            self.inbound.pop_batch(usize::MAX, |m| pending.push_back(m));
            // Under Block the I/O thread may hold messages it read from this connection
            // (it pauses under this lock): newer bytes wait until they are queued.
            if pushes_back && shared.read_paused.is_raised() {
                return true;
            }
            let (mut messages, mut bytes) = (0u64, 0u64);
            io.read_messages(now, limit, &mut |m: Message| {
                messages += 1;
                bytes += m.byte_len() as u64;
                pending.push_back(m);
            });
            if messages > 0 {
                conn.peer.messages_in.fetch_add(messages, Ordering::Relaxed);
                conn.peer.bytes_in.fetch_add(bytes, Ordering::Relaxed);
                total_messages += messages;
                total_bytes += bytes;
            }
            any_failed |= io.failed;
            true
        });
        if total_messages > 0 {
            let shared = &self.handle.shared;
            shared
                .messages_in
                .fetch_add(total_messages, Ordering::Relaxed);
            shared.bytes_in.fetch_add(total_bytes, Ordering::Relaxed);
        }
        if any_failed {
            // The I/O thread closes it (and reconnects, for a connect).
            self.handle.context.kick();
        }
    }

    /// The next message already here, without waiting.
    fn next_ready(&mut self) -> Result<Option<Message>, Error> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        match self.inbound.try_pop() {
            Ok(m) => return Ok(Some(m)),
            Err(TryPopError::Closed) => return Err(Error::Closed),
            Err(TryPopError::Empty) => {}
        }
        if self.reads_groups() {
            self.read_groups();
            return Ok(self.pending.pop_front());
        }
        Ok(None)
    }

    /// Spins on [`next_ready`](Self::next_ready) until a message or `deadline`.
    /// The clock is first read after a few empty polls, not per call: a receive that
    /// finds a message at once costs no clock read.
    fn poll_until(&mut self, timeout: Option<Duration>) -> Result<Option<Message>, Error> {
        let mut spins = 0u32;
        let mut started = None;
        loop {
            if let Some(m) = self.next_ready()? {
                return Ok(Some(m));
            }
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 {
                let now = Instant::now();
                let start = *started.get_or_insert(now);
                let waited = now.saturating_duration_since(start);
                if timeout.is_some_and(|t| waited >= t) {
                    return Ok(None);
                }
                // A short wait spins through (a yield on a busy host gives the core away
                // for a time slice); a long one yields, so that an I/O thread or another
                // spinner on this core gets to run.
                if waited >= YIELD_AFTER {
                    std::thread::yield_now();
                }
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Counters of each multicast group joined: per-publisher delivery and exact loss,
    /// kernel drops, NAKs, and what the loss generator did.
    pub fn multicast_stats(&self) -> Vec<MulticastReceiverStats> {
        self.groups
            .iter()
            .map(|g| multicast::receiver_stats(g))
            .collect()
    }

    /// The next message taken from the ring in a batch (blocking mode), if any is
    /// already there: one release of ring slots per batch instead of one per message,
    /// so the consumer does not pull the ring's shared cache line from the I/O thread
    /// for every message it takes.
    fn take_batch(&mut self) -> Option<Message> {
        if let Some(m) = self.pending.pop_front() {
            return Some(m);
        }
        let pending = &mut self.pending;
        self.inbound.pop_batch(RECV_BATCH, |m| pending.push_back(m));
        self.pending.pop_front()
    }

    /// Waits for the next message.
    pub fn recv(&mut self) -> Result<Message, Error> {
        let got = self.recv_inner();
        self.room_made();
        got
    }

    fn recv_inner(&mut self) -> Result<Message, Error> {
        if self.reads_groups() {
            return self.poll_until(None).map(|m| m.expect("no deadline"));
        }
        if let Some(m) = self.take_batch() {
            return Ok(m);
        }
        self.inbound.pop().map_err(|_| Error::Closed)
    }

    /// Waits up to `timeout` for the next message; `Ok(None)` if none came.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, Error> {
        let got = self.recv_timeout_inner(timeout);
        self.room_made();
        got
    }

    fn recv_timeout_inner(&mut self, timeout: Duration) -> Result<Option<Message>, Error> {
        if self.reads_groups() {
            return self.poll_until(Some(timeout));
        }
        if let Some(m) = self.take_batch() {
            return Ok(Some(m));
        }
        match self.inbound.pop_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(PopTimeoutError::Timeout) => Ok(None),
            Err(PopTimeoutError::Closed) => Err(Error::Closed),
        }
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Result<Option<Message>, Error> {
        let got = self.next_ready();
        self.room_made();
        got
    }

    /// Under Block: a receive may have taken messages from a queue whose I/O thread
    /// paused for want of room; once half the queue is free, kick it (see
    /// `ReadPause`). The pause stays raised until the I/O thread has queued everything
    /// it held, and kicks coalesce until it looks. The look (a full fence) comes once
    /// per batch taken from the queue, when the last of it is returned: before this
    /// thread could go back to the queue and wait on it. Other policies pay one
    /// predictable branch.
    #[inline]
    fn room_made(&self) {
        if self.options.holds_senders_back()
            && self.pending.is_empty()
            && self.handle.shared.read_paused.raised_after_take()
            && self.inbound.len() <= self.options.queue_capacity / 2
        {
            self.handle.context.kick();
        }
    }

    /// Counters of this socket; `dropped` counts messages its full queue refused or
    /// evicted.
    pub fn stats(&self) -> SocketStats {
        let mut s = self.handle.shared.stats();
        s.messages_in += self.group_in.0;
        s.bytes_in += self.group_in.1;
        let q = self.inbound.stats();
        s.dropped = q.dropped_newest + q.dropped_oldest;
        s
    }

    /// Counters of each connected peer (what it sent us).
    pub fn peer_stats(&self) -> Vec<super::PeerStats> {
        self.handle.shared.peer_stats()
    }

    /// The inbound queue's counters.
    pub fn queue_stats(&self) -> RingStats {
        self.inbound.stats()
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.handle.id)
            .finish()
    }
}
