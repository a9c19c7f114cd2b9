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
use crate::io::{lock, Context, DirectSend, LazyNow, McastTx, PeerLink, Role};
use crate::proto::mcast::SendError;
use crate::proto::subscriptions::SubscriptionTable;
use crate::ring::{OverflowPolicy, PushError, RingStats};
use crate::wire::zmtp::SocketType;

/// A PUB socket: [`send`](Publisher::send) queues a message for every connected subscriber
/// whose subscriptions match its first frame (filtering happens here, at the publisher,
/// as ZeroMQ does over TCP). Subscribers that connect later miss what was sent before
/// their subscription arrived (ZeroMQ's "slow joiner");
/// [`wait_for_subscribers`](Publisher::wait_for_subscribers) bridges that gap where it matters.
///
/// Implementation notes: `send` encodes the message into each matching peer's
/// connection and writes it on the calling thread while that connection keeps up
/// (bursts are batched into one write). Behind a peer that does not keep up (256 KiB
/// unsent), messages go to that peer's own SPSC ring to the I/O thread, so the overflow
/// policy applies per peer and a slow subscriber never stalls the others (unless the
/// policy is Block). A message that goes to rings is reference-counted once and shared
/// by them: fan-out copies no payload.
pub struct Publisher {
    handle: SocketHandle,
    attach: Receiver<PeerLink>,
    peers: Vec<Peer>,
    /// Drops counted by the rings of peers that have gone.
    retired_drops: u64,
    /// Waits for room under Block (count, time) that no live peer's queue counts: those
    /// of peers that have gone, and round-robin sends that waited for any peer to have
    /// room (that wait is the handle's own, not a queue's).
    blocked_elsewhere: (u64, Duration),
    /// Messages and bytes sent directly to peers that have gone (see
    /// `Peer::direct_messages`).
    retired_direct: (u64, u64),
    /// Messages and bytes handed to the multicast groups: counted here, by the only
    /// thread that sends to them, rather than with two atomic adds per send.
    group_out: (u64, u64),
    /// `SocketShared::attached` when the attach channel was last drained.
    attached_seen: u64,
    /// Multicast groups joined; each gets every message (receivers filter).
    groups: Vec<Arc<Mutex<McastTx>>>,
    options: SocketOptions,
    routing: Routing,
    /// Messages no peer took (round-robin routing): none was connected, or Block's
    /// timeout passed with every peer full.
    unplaced_drops: u64,
}

/// What one pass of round-robin routing found.
enum Offer {
    /// A peer took the message.
    Taken,
    /// Every peer is full; the index is the first in turn.
    Full(usize),
    /// No peer is connected.
    NoPeer,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routing {
    /// To every peer whose subscriptions match its topic (PUB).
    Subscriptions,
    /// To one peer, the next in turn that has room (PUSH).
    RoundRobin {
        /// Index into `peers` of the peer to try first.
        next: usize,
    },
}

struct Peer {
    link: PeerLink,
    version: u64,
    subscriptions: Arc<SubscriptionTable>,
    /// Sent directly by this handle (the I/O thread counts what it drains from the ring
    /// in `link.shared`): plain counters, so a direct send costs no atomic RMW.
    direct_messages: u64,
    direct_bytes: u64,
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

/// Writes `message` into a peer's connection on the calling thread when nothing older
/// waits in that peer's ring; `None` to take the ring instead.
///
/// It waits for the connection's lock: the I/O thread holds it only to write or read a
/// chunk, and taking the ring instead would send every later message through the ring
/// too (to keep the order) until the I/O thread drained it.
fn write_directly(peer: &mut Peer, message: &Outgoing) -> Option<DirectSend> {
    let mut io = lock(&peer.link.direct);
    // Under the lock the I/O thread is not draining the ring: if it is empty, every
    // earlier message is already in the session, ahead of this one.
    if io.closed || !peer.link.queue.is_empty() {
        return None;
    }
    let sent = match message.as_message() {
        Ok(m) => io.send_direct(m.frames()),
        Err(frames) => io.send_direct(frames),
    };
    peer.link
        .shared
        .unsent_bytes
        .store(io.session.queued_len() as u64, Ordering::Relaxed);
    drop(io);
    match sent {
        DirectSend::Full => None,
        DirectSend::Sent | DirectSend::Deferred => {
            peer.direct_messages += 1;
            peer.direct_bytes += message.byte_len() as u64;
            Some(sent)
        }
        DirectSend::Broken => Some(sent),
    }
}

/// A message being fanned out: borrowed from the caller, or owned, until a ring needs a
/// shared reference to it. A borrowed message becomes a [`Message`] (a copy) only then;
/// a direct write or a multicast group copies it straight into its batch or datagram.
enum Outgoing<'a> {
    Borrowed(&'a [&'a [u8]]),
    Owned(Message),
    Shared(Arc<Message>),
}

impl<'a> Outgoing<'a> {
    /// The message, or the caller's frames when it is borrowed.
    fn as_message(&self) -> Result<&Message, &'a [&'a [u8]]> {
        match self {
            Outgoing::Borrowed(frames) => Err(frames),
            Outgoing::Owned(m) => Ok(m),
            Outgoing::Shared(m) => Ok(m),
        }
    }

    /// The first frame, which subscriptions match.
    fn topic(&self) -> &[u8] {
        match self.as_message() {
            Ok(m) => m.topic(),
            Err(frames) => frames.first().copied().unwrap_or_default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.as_message()
            .map_or_else(<[_]>::is_empty, Message::is_empty)
    }

    fn byte_len(&self) -> usize {
        match self.as_message() {
            Ok(m) => m.byte_len(),
            Err(frames) => frames.iter().map(|f| f.len()).sum(),
        }
    }

    fn shared(&mut self) -> Arc<Message> {
        // The placeholder is an empty message, for the instant before the swap.
        let shared = match std::mem::replace(self, Outgoing::Owned(Message::default())) {
            // Frame by frame: two fit the message itself, with no list to allocate.
            Outgoing::Borrowed(frames) => Arc::new(Message::from_parts(
                frames.iter().map(|f| Bytes::copy_from_slice(f)),
            )),
            Outgoing::Owned(m) => Arc::new(m),
            Outgoing::Shared(m) => m,
        };
        *self = Outgoing::Shared(shared.clone());
        shared
    }
}

fn no_frames() -> Error {
    Error::InvalidOption("a message needs at least one frame".into())
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
        Publisher::open(context, options, SocketType::Pub, Routing::Subscriptions)
    }

    /// The sending socket of `socket_type`, routing as `routing` says.
    pub(crate) fn open(
        context: &Context,
        options: SocketOptions,
        socket_type: SocketType,
        routing: Routing,
    ) -> Result<Publisher, Error> {
        check_capacity(&options)?;
        let (tx, attach) = crossbeam_channel::unbounded();
        let handle = SocketHandle::open(
            context,
            Role::Publisher { attach: tx },
            socket_type,
            options.clone(),
        )?;
        Ok(Publisher {
            handle,
            attach,
            peers: Vec::new(),
            retired_drops: 0,
            blocked_elsewhere: (0, Duration::ZERO),
            retired_direct: (0, 0),
            group_out: (0, 0),
            attached_seen: 0,
            groups: Vec::new(),
            options,
            routing,
            unplaced_drops: 0,
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
    /// [`stats`](Self::stats)); with the Block policy this waits for room. An empty
    /// message (no frame) is refused with an error.
    pub fn send(&mut self, message: Message) -> Result<usize, Error> {
        self.fan_out(Outgoing::Owned(message))
    }

    /// Sends a message made of copies of `frames` (topic first): [`send`](Self::send)
    /// for bytes the caller keeps, as `zmq_send` copies from its buffer. A message
    /// written to a connection directly is copied into the connection's batch, and one
    /// for a multicast group into its datagram: neither allocates. One that must wait in
    /// a peer's queue is copied into a [`Message`] once, shared by every peer that
    /// queues it.
    ///
    /// An empty `frames` is refused, as an empty message is by `send`: a ZMTP message has
    /// at least one frame.
    pub fn send_slices(&mut self, frames: &[&[u8]]) -> Result<usize, Error> {
        self.fan_out(Outgoing::Borrowed(frames))
    }

    fn fan_out(&mut self, mut message: Outgoing<'_>) -> Result<usize, Error> {
        if message.is_empty() {
            return Err(no_frames());
        }
        self.attach_new_peers();
        if self.peers.is_empty() && !self.groups.is_empty() {
            // Multicast only: the groups encode it here, so it needs no shared copy.
            return self.send_to_groups(&message);
        }
        let mut queued = 0;
        let mut any_closed = false;
        let mut kick = false;
        for peer in &mut self.peers {
            peer.refresh();
            if !peer.subscriptions.matches(message.topic()) {
                continue;
            }
            match write_directly(peer, &message) {
                Some(DirectSend::Sent) => {
                    queued += 1;
                    continue;
                }
                Some(DirectSend::Deferred) => {
                    queued += 1;
                    kick = true;
                    continue;
                }
                // The I/O thread closes it (and reconnects, for a connect).
                Some(DirectSend::Broken) => {
                    kick = true;
                    continue;
                }
                Some(DirectSend::Full) | None => {}
            }
            match peer.link.queue.push(message.shared()) {
                Ok(()) => {
                    queued += 1;
                    kick = true;
                }
                Err(PushError::Closed(_)) => any_closed = true,
                Err(_) => {}
            }
        }
        if kick {
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

    /// Hands `message` to one peer: the first, starting at the one after the last that
    /// took a message, whose connection or queue has room. When every peer is full,
    /// Block waits until one has room (any of them, or one that connects) and every
    /// other policy hands it to the next peer in turn under that policy (which drops it,
    /// evicts that peer's oldest, or buffers it). With no peer connected, Block waits for
    /// one and every other policy drops the message. A message nobody took is counted
    /// in `stats().dropped`. Returns whether a peer took it.
    pub(crate) fn send_round_robin(&mut self, message: Message) -> Result<bool, Error> {
        self.hand_to_one(Outgoing::Owned(message))
    }

    /// [`send_round_robin`](Self::send_round_robin) of a message borrowed from the
    /// caller, copied as [`send_slices`](Self::send_slices) copies it.
    pub(crate) fn send_round_robin_slices(&mut self, frames: &[&[u8]]) -> Result<bool, Error> {
        self.hand_to_one(Outgoing::Borrowed(frames))
    }

    fn hand_to_one(&mut self, mut message: Outgoing<'_>) -> Result<bool, Error> {
        if message.is_empty() {
            return Err(no_frames());
        }
        let taken = match self.offer(&mut message) {
            Offer::Taken => true,
            Offer::Full(_) | Offer::NoPeer
                if matches!(self.options.policy, OverflowPolicy::Block { .. }) =>
            {
                self.offer_until_taken(&mut message)
            }
            Offer::Full(at) => {
                // Every peer is full: the policy decides, and the ring counts a drop.
                // The turn moves on either way, so that the policy's cost (an
                // eviction, a drop) rotates over the full peers as deliveries do.
                self.routing = Routing::RoundRobin { next: at + 1 };
                let pushed = self.peers[at].link.queue.push(message.shared()).is_ok();
                self.handle.context.kick();
                pushed
            }
            Offer::NoPeer => {
                self.unplaced_drops += 1;
                false
            }
        };
        Ok(taken)
    }

    /// Block: offers `message` again until a peer takes it or the policy's timeout
    /// passes (then it is dropped and counted).
    fn offer_until_taken(&mut self, message: &mut Outgoing) -> bool {
        let OverflowPolicy::Block { timeout } = self.options.policy else {
            return false;
        };
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let taken = loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.unplaced_drops += 1;
                break false;
            }
            // The I/O thread drains the rings, and a peer may connect, meanwhile.
            std::thread::sleep(Duration::from_micros(50));
            if let Offer::Taken = self.offer(message) {
                break true;
            }
        };
        self.blocked_elsewhere.0 += 1;
        self.blocked_elsewhere.1 += started.elapsed();
        taken
    }

    /// One pass over the peers in turn, without the overflow policy: the first whose
    /// connection or queue has room takes `message`.
    fn offer(&mut self, message: &mut Outgoing) -> Offer {
        self.attach_new_peers();
        let n = self.peers.len();
        if n == 0 {
            return Offer::NoPeer;
        }
        let start = match self.routing {
            Routing::RoundRobin { next } => next % n,
            Routing::Subscriptions => 0,
        };
        let capacity = self.options.queue_capacity;
        let mut kick = false;
        let mut any_closed = false;
        let mut taken = None;
        // The first live peer in turn: where the policy applies if every peer is full.
        let mut first_live = None;
        for i in 0..n {
            let at = (start + i) % n;
            let peer = &mut self.peers[at];
            match write_directly(peer, message) {
                Some(DirectSend::Sent) => {
                    taken = Some(at);
                    break;
                }
                Some(DirectSend::Deferred) => {
                    kick = true;
                    taken = Some(at);
                    break;
                }
                // The I/O thread closes it (and reconnects, for a connect).
                Some(DirectSend::Broken) => {
                    kick = true;
                    continue;
                }
                Some(DirectSend::Full) | None => {}
            }
            if peer.link.queue.is_closed() {
                any_closed = true;
                continue;
            }
            first_live.get_or_insert(at);
            // Only the I/O thread takes from the ring, so room seen here stays room.
            if peer.link.queue.len() < capacity {
                match peer.link.queue.push(message.shared()) {
                    Ok(()) => {
                        kick = true;
                        taken = Some(at);
                        break;
                    }
                    Err(PushError::Closed(_)) => any_closed = true,
                    Err(_) => {}
                }
            }
        }
        if let Some(at) = taken {
            self.routing = Routing::RoundRobin { next: at + 1 };
        }
        if kick {
            self.handle.context.kick();
        }
        if any_closed {
            self.retire_closed_peers();
            if taken.is_none() {
                // The indices moved; each retry has at least one peer fewer.
                return self.offer(message);
            }
        }
        match (taken, first_live) {
            (Some(_), _) => Offer::Taken,
            (None, Some(at)) => Offer::Full(at),
            (None, None) => Offer::NoPeer,
        }
    }

    /// Encodes and sends on this thread: no hand-off to the I/O thread, which only runs
    /// the timers (linger, heartbeats) and answers NAKs.
    fn send_to_groups(&mut self, message: &Outgoing<'_>) -> Result<usize, Error> {
        let mut clock = LazyNow::default();
        let mut wake = false;
        for group in &self.groups {
            let mut group = lock(group);
            let sent = match message.as_message() {
                Ok(m) => group.send(m.frames(), &mut clock),
                Err(frames) => group.send(frames, &mut clock),
            };
            match sent {
                Ok(w) => wake |= w,
                Err(SendError::TooLarge { size, max }) => {
                    return Err(Error::TooLarge { size, max })
                }
                Err(SendError::Empty) => return Err(no_frames()),
            }
        }
        if wake {
            self.handle.context.kick();
        }
        let n = self.groups.len() as u64;
        self.group_out.0 += n;
        self.group_out.1 += n * message.byte_len() as u64;
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
        self.send(Message::with_topic(topic.into(), payload.into()))
    }

    fn attach_new_peers(&mut self) {
        let attached = self.handle.shared.attached.load(Ordering::Acquire);
        if attached == self.attached_seen {
            return;
        }
        self.attached_seen = attached;
        while let Ok(link) = self.attach.try_recv() {
            self.peers.push(Peer {
                link,
                version: u64::MAX,
                subscriptions: Arc::new(SubscriptionTable::new()),
                direct_messages: 0,
                direct_bytes: 0,
            });
        }
    }

    fn retire_closed_peers(&mut self) {
        let mut retired = 0;
        let (mut messages, mut bytes) = (0, 0);
        let blocked = &mut self.blocked_elsewhere;
        self.peers.retain(|p| {
            let gone = p.link.queue.is_closed();
            if gone {
                let queue = p.link.queue.stats();
                retired += drops(&queue);
                blocked.0 += queue.blocked;
                blocked.1 += queue.blocked_time;
                messages += p.direct_messages;
                bytes += p.direct_bytes;
            }
            !gone
        });
        self.retired_drops += retired;
        self.retired_direct.0 += messages;
        self.retired_direct.1 += bytes;
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
        s.dropped = self.retired_drops + self.unplaced_drops;
        s.messages_out += self.retired_direct.0 + self.group_out.0;
        s.bytes_out += self.retired_direct.1 + self.group_out.1;
        (s.blocked, s.blocked_time) = self.blocked_elsewhere;
        for p in &self.peers {
            let queue = p.link.queue.stats();
            s.dropped += drops(&queue);
            s.blocked += queue.blocked;
            s.blocked_time += queue.blocked_time;
            s.messages_out += p.direct_messages;
            s.bytes_out += p.direct_bytes;
        }
        s
    }

    /// Counters of each connected peer, with its queue.
    pub fn peer_stats(&mut self) -> Vec<PeerStats> {
        self.attach_new_peers();
        self.peers
            .iter()
            .map(|p| {
                let mut s = p.link.shared.stats(Some(p.link.queue.stats()));
                s.messages_out += p.direct_messages;
                s.bytes_out += p.direct_bytes;
                s
            })
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
