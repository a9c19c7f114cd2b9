//! [`Pusher`] and [`Puller`]: load balancing, ZeroMQ's PUSH/PULL pipeline. Where a
//! publisher gives every message to every matching subscriber, a pusher gives each
//! message to exactly one puller, taking its connected pullers in turn.
//!
//! Both are the pub/sub machinery with another routing: a [`Pusher`] is a publisher
//! whose `send` picks one peer instead of every matching one (same per-peer queues,
//! direct writes and overflow policy), a [`Puller`] is a subscriber that announces
//! itself as PULL and has no subscriptions. The handshake accepts only the matching
//! type (PUSH talks to PULL), so libzmq, pyzmq and jeromq PUSH/PULL sockets interoperate
//! and a PUB or SUB peer is refused.

use std::time::{Duration, Instant};

use super::publisher::Routing;
use super::{
    Endpoint, Error, Message, PeerStats, Publisher, RingStats, SocketOptions, SocketStats,
    Subscriber,
};
use crate::io::Context;
use crate::wire::zmtp::SocketType;

/// Refuses `udp://`: multicast delivers to every member, which is not load balancing.
fn stream_endpoint(endpoint: &str) -> Result<(), Error> {
    match endpoint.parse::<Endpoint>()? {
        Endpoint::Udp(_) => Err(Error::InvalidEndpoint(format!(
            "{endpoint}: push/pull runs over tcp:// and ipc:// only (multicast reaches every member)"
        ))),
        _ => Ok(()),
    }
}

/// A PUSH socket: [`send`](Pusher::send) gives each message to one connected
/// [`Puller`] (or libzmq PULL), round-robin.
///
/// The next peer in turn gets the message if its connection or its queue has room;
/// a full peer is skipped, so a slow puller gets fewer messages instead of stalling the
/// others. When every peer is full, the socket's
/// [`OverflowPolicy`](super::OverflowPolicy) decides: Block waits until any peer has
/// room (or a new one connects), up to its timeout; otherwise the next peer in turn gets
/// the message under the policy, and DropNewest drops it, DropOldest evicts that peer's
/// oldest queued message, Buffer queues it beside the ring (up to its budget). With no
/// peer connected at all, Block waits for one to connect (up to its timeout) and every
/// other policy drops the message: nothing is queued for peers that may never come.
/// Every message dropped, a Block timeout included, is counted in
/// [`stats`](Pusher::stats)`().dropped`.
///
/// libzmq's PUSH never drops: at the high-water mark of every peer, or with no peer,
/// its send blocks. `OverflowPolicy::Block { timeout: None }` behaves the same; the
/// default here is DropNewest, as at a [`Publisher`], so a sender never stalls unless
/// asked to. Only peers whose handshake is done count (libzmq's `ZMQ_IMMEDIATE`): a
/// `connect` still in progress takes nothing.
///
/// A message is written to one connection and never re-sent: what a peer had not read
/// when its connection broke is lost, as with libzmq.
///
/// ```
/// use std::time::Duration;
/// use volley::socket::{Message, Puller, Pusher};
///
/// let mut pusher = Pusher::new()?;
/// let endpoint = pusher.bind("tcp://127.0.0.1:0")?.to_string();
/// let mut workers = [Puller::new()?, Puller::new()?];
/// for w in &mut workers {
///     w.connect(&endpoint)?;
/// }
/// assert!(pusher.wait_for_peers(2, Duration::from_secs(5)));
/// for job in ["a", "b", "c", "d"] {
///     assert!(pusher.send(Message::from_parts([job]))?); // one worker takes each
/// }
/// let mut got = 0;
/// for w in &mut workers {
///     while w.recv_timeout(Duration::from_millis(500))?.is_some() {
///         got += 1;
///     }
/// }
/// assert_eq!(got, 4);
/// # Ok::<(), volley::socket::Error>(())
/// ```
#[derive(Debug)]
pub struct Pusher {
    inner: Publisher,
}

impl Pusher {
    /// A pusher with default options (DropNewest, 1000 messages per peer) on the global
    /// context.
    pub fn new() -> Result<Pusher, Error> {
        Pusher::with_options(Context::global()?, SocketOptions::default())
    }

    /// A pusher with `options` on `context`. `queue_capacity` and `policy` apply per
    /// peer, as at a [`Publisher`]; `multicast` is unused.
    pub fn with_options(context: &Context, options: SocketOptions) -> Result<Pusher, Error> {
        let inner = Publisher::open(
            context,
            options,
            SocketType::Push,
            Routing::RoundRobin { next: 0 },
        )?;
        Ok(Pusher { inner })
    }

    /// Listens on `endpoint` (`tcp://HOST:PORT`, `tcp://*:PORT`, `ipc://PATH`) for pullers
    /// that connect; returns the endpoint as bound (with the real port when 0 was asked
    /// for). `udp://` is refused.
    pub fn bind(&mut self, endpoint: &str) -> Result<Endpoint, Error> {
        stream_endpoint(endpoint)?;
        self.inner.bind(endpoint)
    }

    /// Connects to a puller that binds, reconnecting with backoff whenever the
    /// connection is lost. An unreachable endpoint is retried, not an error.
    pub fn connect(&mut self, endpoint: &str) -> Result<(), Error> {
        stream_endpoint(endpoint)?;
        self.inner.connect(endpoint)
    }

    /// Gives `message` to one peer (see the type's documentation for which); returns
    /// whether one took it, `false` when it was dropped (and counted). With the Block
    /// policy this may wait for room or for a peer. An empty message (no frame) is refused
    /// with an error.
    pub fn send(&mut self, message: Message) -> Result<bool, Error> {
        self.inner.send_round_robin(message)
    }

    /// Like [`send`](Self::send), for a message made of copies of `frames`: written to
    /// a connection directly it is copied into the connection's batch and allocates
    /// nothing; one that must wait in a peer's queue is copied into a [`Message`] once
    /// (see [`Publisher::send_slices`](super::Publisher::send_slices)). An empty
    /// `frames` is refused.
    pub fn send_slices(&mut self, frames: &[&[u8]]) -> Result<bool, Error> {
        self.inner.send_round_robin_slices(frames)
    }

    /// Peers connected now (handshake done).
    pub fn peer_count(&mut self) -> usize {
        self.inner.peer_count()
    }

    /// Waits until at least `peers` peers are connected, or `timeout` passes; returns
    /// whether they are. Messages sent before a puller connects go to the others only,
    /// so a test or a batch job that wants them spread waits here first.
    pub fn wait_for_peers(&mut self, peers: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.inner.peer_count() >= peers {
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
        self.inner.flush(timeout)
    }

    /// Counters of this socket, summed over its peers (including ones that left);
    /// `dropped` also counts messages dropped for want of any peer.
    pub fn stats(&mut self) -> SocketStats {
        self.inner.stats()
    }

    /// Counters of each connected peer, with its queue.
    pub fn peer_stats(&mut self) -> Vec<PeerStats> {
        self.inner.peer_stats()
    }
}

/// A PULL socket: receives the messages of every [`Pusher`] (or libzmq PUSH) it is
/// connected to, each pusher's in the order it sent them, all into the socket's one
/// inbound queue.
///
/// The queueing is fair by connection, not by message: the I/O thread reads each
/// connection as it becomes readable, until its socket buffer is empty, so a busy pusher
/// is ahead of a quiet one by at most what the kernel buffered for it (with
/// [`RecvMode::BusyPoll`](super::RecvMode), the receiving thread reads its connections in
/// turn, up to 1024 messages each). libzmq's PULL alternates message by message.
///
/// The inbound queue has the socket's capacity and [`OverflowPolicy`](super::OverflowPolicy);
/// what it drops is counted in [`stats`](Puller::stats)`().dropped`. Under
/// `Block { timeout: None }` it drops nothing: a full queue pauses reading the pushers'
/// connections until `recv` makes room, so TCP's flow control holds them back, and a
/// pusher under Block waits (libzmq's PUSH/PULL at the high-water mark). Each pause is
/// counted in `stats().blocked`.
///
/// ```
/// use std::time::Duration;
/// use volley::socket::{Message, Puller, Pusher};
///
/// let mut puller = Puller::new()?;
/// let endpoint = puller.bind("tcp://127.0.0.1:0")?.to_string();
/// let mut pusher = Pusher::new()?;
/// pusher.connect(&endpoint)?;
/// assert!(pusher.wait_for_peers(1, Duration::from_secs(5)));
/// pusher.send(Message::from_parts(["job", "42"]))?;
/// let job = puller.recv()?;
/// assert_eq!(&job.frames()[1][..], b"42");
/// # Ok::<(), volley::socket::Error>(())
/// ```
#[derive(Debug)]
pub struct Puller {
    inner: Subscriber,
}

impl Puller {
    /// A puller with default options on the global context.
    pub fn new() -> Result<Puller, Error> {
        Puller::with_options(Context::global()?, SocketOptions::default())
    }

    /// A puller with `options` on `context` (`recv_mode` works as at a [`Subscriber`];
    /// `multicast` is unused).
    pub fn with_options(context: &Context, options: SocketOptions) -> Result<Puller, Error> {
        let inner = Subscriber::open(context, options, SocketType::Pull)?;
        Ok(Puller { inner })
    }

    /// Listens on `endpoint` for pushers that connect; returns the endpoint as bound.
    /// `udp://` is refused.
    pub fn bind(&mut self, endpoint: &str) -> Result<Endpoint, Error> {
        stream_endpoint(endpoint)?;
        self.inner.bind(endpoint)
    }

    /// Connects to a pusher that binds, reconnecting with backoff whenever the
    /// connection is lost.
    pub fn connect(&mut self, endpoint: &str) -> Result<(), Error> {
        stream_endpoint(endpoint)?;
        self.inner.connect(endpoint)
    }

    /// Waits for the next message.
    pub fn recv(&mut self) -> Result<Message, Error> {
        self.inner.recv()
    }

    /// Waits up to `timeout` for the next message; `Ok(None)` if none came.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, Error> {
        self.inner.recv_timeout(timeout)
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Result<Option<Message>, Error> {
        self.inner.try_recv()
    }

    /// Counters of this socket; `dropped` counts messages its full queue refused or
    /// evicted.
    pub fn stats(&self) -> SocketStats {
        self.inner.stats()
    }

    /// Counters of each connected peer (what it sent us).
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        self.inner.peer_stats()
    }

    /// The inbound queue's counters.
    pub fn queue_stats(&self) -> RingStats {
        self.inner.queue_stats()
    }
}
