//! [`Publisher`]: fan-out to every subscriber whose subscriptions match the topic.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use bytes::Bytes;
use crossbeam_channel::Receiver;

use super::multicast::{self, MulticastSenderStats};
use super::{
    check_capacity, Endpoint, Error, Message, PeerStats, SocketHandle, SocketOptions, SocketStats,
};
use crate::io::{lock, Context, McastTx, PeerLink, Role};
use crate::proto::mcast::SendError;
use crate::proto::subscriptions::SubscriptionTable;
use crate::ring::{PushError, RingStats};

/// A PUB socket: [`send`](Publisher::send) queues a message for every connected subscriber
/// whose subscriptions match its first frame (filtering happens here, at the publisher,
/// as ZeroMQ does over TCP). Subscribers that connect later miss what was sent before
/// their subscription arrived (ZeroMQ's "slow joiner");
/// [`wait_for_subscribers`](Publisher::wait_for_subscribers) bridges that gap where it matters.
///
/// Implementation notes: each peer has its own SPSC ring from this handle to the I/O
/// thread, so the overflow policy applies per peer and a slow subscriber never stalls the
/// others (unless the policy is Block). A message is reference-counted once and shared by
/// every peer's ring: fan-out copies no payload.
pub struct Publisher {
    handle: SocketHandle,
    attach: Receiver<PeerLink>,
    peers: Vec<Peer>,
    /// Drops counted by the rings of peers that have gone.
    retired_drops: u64,
    /// Multicast groups joined; each gets every message (receivers filter).
    groups: Vec<Arc<Mutex<McastTx>>>,
    options: SocketOptions,
}

struct Peer {
    link: PeerLink,
    version: u64,
    subscriptions: Arc<SubscriptionTable>,
}

impl Peer {
    fn refresh(&mut self) {
        let v = self
            .link
            .shared
            .subscriptions_version
            .load(Ordering::Acquire);
        if v != self.version {
            self.version = v;
            self.subscriptions = self.link.shared.subscriptions();
        }
    }
}

/// A busy-polling publisher writes a peer's connection itself when nothing older waits in
/// that peer's ring and the I/O thread is not using the connection: `Some(true)` when
/// the message went into the connection, `Some(false)` when the connection is broken,
/// `None` to take the ring instead.
fn write_directly(peer: &Peer, message: &Message) -> Option<bool> {
    let io = peer.link.direct.as_ref()?;
    let mut io = io.try_lock().ok()?;
    // Under the lock the I/O thread is not draining the ring: if it is empty, every
    // earlier message is already in the session, ahead of this one.
    if !peer.link.queue.is_empty() || io.closed {
        return None;
    }
    let written = io.write_message(message.frames());
    if written {
        let shared = &peer.link.shared;
        shared.messages_out.fetch_add(1, Ordering::Relaxed);
        shared
            .bytes_out
            .fetch_add(message.byte_len() as u64, Ordering::Relaxed);
    }
    Some(written)
}

fn drops(s: &RingStats) -> u64 {
    s.dropped_newest + s.dropped_oldest + s.timed_out
}

impl Publisher {
    /// A publisher with default options on the global context.
    pub fn new() -> Result<Publisher, Error> {
        Publisher::with_options(Context::global()?, SocketOptions::default())
    }

    /// A publisher with `options` on `context`.
    pub fn with_options(context: &Context, options: SocketOptions) -> Result<Publisher, Error> {
        check_capacity(&options)?;
        let (tx, attach) = crossbeam_channel::unbounded();
        let handle = SocketHandle::open(context, Role::Publisher { attach: tx }, options.clone())?;
        Ok(Publisher {
            handle,
            attach,
            peers: Vec::new(),
            retired_drops: 0,
            groups: Vec::new(),
            options,
        })
    }

    /// Listens on `endpoint` (`tcp://HOST:PORT`, `tcp://*:PORT`, `ipc://PATH`), or joins
    /// a multicast group (`udp://GROUP:PORT?iface=ADDR&ttl=N`); returns the endpoint as
    /// bound (with the real port when 0 was asked for).
    pub fn bind(&mut self, endpoint: &str) -> Result<Endpoint, Error> {
        if let Endpoint::Udp(udp) = endpoint.parse()? {
            return self.join(&udp);
        }
        self.handle.bind(endpoint)
    }

    /// Connects to a subscriber that binds, reconnecting with backoff whenever the
    /// connection is lost. Returns once the attempt is started: an unreachable endpoint
    /// is retried, not an error. A `udp://` endpoint joins the group, as `bind` does.
    pub fn connect(&mut self, endpoint: &str) -> Result<(), Error> {
        if let Endpoint::Udp(udp) = endpoint.parse()? {
            return self.join(&udp).map(drop);
        }
        self.handle.connect(endpoint)
    }

    fn join(&mut self, udp: &super::UdpEndpoint) -> Result<Endpoint, Error> {
        let (tx, joined) =
            multicast::join_tx(&self.handle.context, self.handle.id, udp, &self.options)?;
        self.groups.push(tx);
        Ok(joined)
    }

    /// Queues `message` for every subscriber whose subscriptions match its first frame;
    /// returns how many took it. A peer whose queue refuses it counts the drop (see
    /// [`stats`](Self::stats)); with the Block policy this waits for room.
    pub fn send(&mut self, message: Message) -> Result<usize, Error> {
        self.attach_new_peers();
        if self.peers.is_empty() && !self.groups.is_empty() {
            // Multicast only: the groups encode it here, so it needs no shared copy.
            return self.send_to_groups(&message);
        }
        let message = Arc::new(message);
        let mut queued = 0;
        let mut any_closed = false;
        let mut any_failed = false;
        let mut queued_in_rings = 0;
        for peer in &mut self.peers {
            peer.refresh();
            if !peer.subscriptions.matches(message.topic()) {
                continue;
            }
            if let Some(written) = write_directly(peer, &message) {
                if written {
                    queued += 1;
                    let shared = &self.handle.shared;
                    shared.messages_out.fetch_add(1, Ordering::Relaxed);
                    shared
                        .bytes_out
                        .fetch_add(message.byte_len() as u64, Ordering::Relaxed);
                } else {
                    any_failed = true;
                }
                continue;
            }
            match peer.link.queue.push(message.clone()) {
                Ok(()) => {
                    queued += 1;
                    queued_in_rings += 1;
                }
                Err(PushError::Closed(_)) => any_closed = true,
                Err(_) => {}
            }
        }
        if queued_in_rings > 0 || any_failed {
            // A direct write needs no kick: what a full socket did not take, the I/O
            // thread writes on the socket's next writable edge.
            self.handle.context.kick();
        }
        if any_closed {
            self.retire_closed_peers();
        }
        if !self.groups.is_empty() {
            queued += self.send_to_groups(&message)?;
        }
        Ok(queued)
    }

    /// Encodes and sends on this thread: no hand-off to the I/O thread, which only runs
    /// the timers (linger, heartbeats) and answers NAKs.
    fn send_to_groups(&mut self, message: &Message) -> Result<usize, Error> {
        let now = Instant::now();
        let mut wake = false;
        for group in &self.groups {
            match lock(group).send(message.frames(), now) {
                Ok(w) => wake |= w,
                Err(SendError::TooLarge { size, max }) => {
                    return Err(Error::TooLarge { size, max })
                }
                Err(SendError::Empty) => {
                    return Err(Error::InvalidOption(
                        "a message needs at least one frame".into(),
                    ))
                }
            }
        }
        if wake {
            self.handle.context.kick();
        }
        let shared = &self.handle.shared;
        let n = self.groups.len() as u64;
        shared.messages_out.fetch_add(n, Ordering::Relaxed);
        shared
            .bytes_out
            .fetch_add(n * message.byte_len() as u64, Ordering::Relaxed);
        Ok(self.groups.len())
    }

    /// Counters of each multicast group joined.
    pub fn multicast_stats(&self) -> Vec<MulticastSenderStats> {
        self.groups
            .iter()
            .map(|g| multicast::sender_stats(g))
            .collect()
    }

    /// Sends a two-frame message: `topic`, then `payload`.
    pub fn send_topic(
        &mut self,
        topic: impl Into<Bytes>,
        payload: impl Into<Bytes>,
    ) -> Result<usize, Error> {
        self.send(Message::new(vec![topic.into(), payload.into()]))
    }

    fn attach_new_peers(&mut self) {
        while let Ok(link) = self.attach.try_recv() {
            self.peers.push(Peer {
                link,
                version: u64::MAX,
                subscriptions: Arc::new(SubscriptionTable::new()),
            });
        }
    }

    fn retire_closed_peers(&mut self) {
        let mut retired = 0;
        self.peers.retain(|p| {
            let gone = p.link.queue.is_closed();
            if gone {
                retired += drops(&p.link.queue.stats());
            }
            !gone
        });
        self.retired_drops += retired;
    }

    /// Peers connected now (handshake done).
    pub fn peer_count(&mut self) -> usize {
        self.attach_new_peers();
        self.retire_closed_peers();
        self.peers.len()
    }

    /// The subscriptions of every connected peer, merged: each prefix with how many
    /// subscriptions name it (what ZeroMQ's XPUB reports).
    pub fn subscriptions(&mut self) -> Vec<(Bytes, usize)> {
        self.attach_new_peers();
        self.retire_closed_peers();
        let mut merged = SubscriptionTable::new();
        for peer in &mut self.peers {
            peer.refresh();
            for (prefix, count) in peer.subscriptions.iter() {
                for _ in 0..count {
                    merged.subscribe(prefix);
                }
            }
        }
        merged
            .iter()
            .map(|(p, c)| (Bytes::copy_from_slice(p), c))
            .collect()
    }

    /// Waits until at least `peers` peers are connected and each has subscribed to
    /// something, or `timeout` passes; returns whether they did.
    pub fn wait_for_subscribers(&mut self, peers: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.attach_new_peers();
            self.retire_closed_peers();
            let mut subscribed = 0;
            for p in &mut self.peers {
                p.refresh();
                subscribed += usize::from(!p.subscriptions.is_empty());
            }
            if subscribed >= peers {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until every queued message has been handed to the operating system, or
    /// `timeout` passes; returns whether it was.
    pub fn flush(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for group in &self.groups {
            lock(group).flush(Instant::now());
        }
        loop {
            self.attach_new_peers();
            self.retire_closed_peers();
            let pending = self.peers.iter().any(|p| {
                p.link.queue.stats().len > 0
                    || p.link.shared.unsent_bytes.load(Ordering::Relaxed) > 0
            });
            if !pending {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.handle.context.kick();
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Counters of this socket, summed over its peers (including ones that left).
    pub fn stats(&mut self) -> SocketStats {
        self.attach_new_peers();
        let mut s = self.handle.shared.stats();
        s.dropped = self.retired_drops
            + self
                .peers
                .iter()
                .map(|p| drops(&p.link.queue.stats()))
                .sum::<u64>();
        s
    }

    /// Counters of each connected peer, with its queue.
    pub fn peer_stats(&mut self) -> Vec<PeerStats> {
        self.attach_new_peers();
        self.peers
            .iter()
            .map(|p| p.link.shared.stats(Some(p.link.queue.stats())))
            .collect()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Queued messages get their last chance when the handle closes the socket.
        self.handle.context.kick();
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("id", &self.handle.id)
            .field("peers", &self.peers.len())
            .finish()
    }
}
