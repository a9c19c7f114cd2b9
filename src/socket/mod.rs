//! The user API: [`Publisher`] and [`Subscriber`] over `tcp://` and `ipc://`, speaking
//! ZMTP 3.1 so that libzmq, pyzmq and jeromq peers can join the same topics; and
//! [`Pusher`] and [`Puller`], which share work out instead (each message to one puller,
//! round-robin).
//!
//! ```no_run
//! use std::time::Duration;
//! use volley::socket::{Message, Publisher, Subscriber};
//!
//! let mut publisher = Publisher::new()?;
//! let endpoint = publisher.bind("tcp://127.0.0.1:0")?;          // port 0: pick one
//! let mut subscriber = Subscriber::new()?;
//! subscriber.connect(&endpoint.to_string())?;
//! subscriber.subscribe(b"cpu.")?;                                 // prefix match
//! publisher.wait_for_subscribers(1, Duration::from_secs(5));     // the slow-joiner gap
//! publisher.send(Message::from_parts(["cpu.load", "0.42"]))?;
//! let msg = subscriber.recv()?;
//! assert_eq!(msg.topic(), b"cpu.load");
//! # Ok::<(), volley::socket::Error>(())
//! ```
//!
//! # Queues and drops
//! Each connected subscriber has its own outbound ring at the publisher, with the
//! socket's [`OverflowPolicy`] (default DropNewest, like ZeroMQ's PUB at its high-water
//! mark); each subscriber socket has one inbound ring. Every drop is counted in
//! [`SocketStats`] and [`PeerStats`].

mod endpoint;
mod multicast;
mod pipeline;
mod publisher;
mod subscriber;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::io::{Command, ConnectTarget, Context, Role, SocketId};
use crate::proto::subscriptions::SubscriptionTable;
pub use crate::proto::zmtp::Message;
use crate::ring::ItemSize;
pub use crate::ring::{OverflowPolicy, RingStats};
use crate::wire::zmtp::SocketType;
pub use endpoint::{Endpoint, UdpEndpoint};
pub use multicast::{
    MulticastOptions, MulticastReceiverStats, MulticastSenderStats, DEFAULT_RECV_BUFFER,
};
pub use pipeline::{Puller, Pusher};
pub use publisher::Publisher;
pub use subscriber::Subscriber;

impl Message {
    /// A message from frames given as anything that converts to [`Bytes`]
    /// (`&'static str`, `String`, `Vec<u8>`, `Bytes`, ...). The first frame is the topic.
    /// Up to two frames take no allocation beyond their own bytes.
    pub fn from_parts<I, F>(frames: I) -> Message
    where
        I: IntoIterator<Item = F>,
        F: Into<Bytes>,
    {
        let mut message = Message::default();
        for frame in frames {
            message.push_frame(frame.into());
        }
        message
    }
}

impl ItemSize for Message {
    fn item_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.byte_len()
    }
}

impl ItemSize for Arc<Message> {
    fn item_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.byte_len()
    }
}

/// How [`Subscriber::recv`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecvMode {
    /// Spin briefly, then park the thread: frees the core, costs a wake-up.
    #[default]
    Blocking,
    /// The calling thread does the socket's I/O itself and spins instead of sleeping
    /// (yielding the CPU after 50 µs without a message): no thread hand-off and no
    /// wake-up on the way, at the cost of a busy core. After a connection's handshake, a
    /// subscriber's `recv` reads it directly; multicast groups are read directly too.
    /// (A publisher's `send` writes its connections directly in either mode, when
    /// nothing older waits in that peer's queue.) The I/O thread still runs the
    /// handshakes, reconnects and heartbeats, and reads a connection whose thread has not
    /// for 10 ms, so a subscriber that is away still answers PINGs. On Linux a TCP
    /// read of up to 4 KiB stays in the kernel's receive queue (a peek) until the next
    /// poll drops it: Linux acknowledges a small segment of a one-way connection from the
    /// read that empties the queue, and this moves that acknowledgement to after the
    /// application has handled the message. On loopback the 64-byte ping-pong over two
    /// pub/sub pairs then takes 1.1-1.2x the time of the same exchange over one raw
    /// busy-polled connection, and 0.7-0.8x that over two (see the README's Performance
    /// section).
    /// Multicast groups are read by the calling thread only (the I/O thread runs their
    /// timers): what arrives while it is away waits in the socket's receive buffer, and
    /// what overflows that is counted as kernel drops.
    BusyPoll,
}

/// Options of one socket.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Capacity of each queue (per peer at a publisher, per socket at a subscriber), in
    /// messages; ZeroMQ's high-water mark. Default 1000.
    pub queue_capacity: usize,
    /// What a full queue does. Default DropNewest. A receiving socket's queue (SUB, PULL)
    /// is filled by the I/O thread, which never waits: there `Block { timeout: None }`
    /// means backpressure instead. When the queue is full the I/O thread stops reading
    /// that socket's TCP/IPC connections until the application has taken half of it, so the
    /// kernel's flow control holds the senders back (a PUSH under Block waits; a PUB
    /// applies its own policy to that peer and counts what it drops). Nothing is
    /// dropped at the receiver. A timeout is refused there (the senders' policies decide
    /// how long they wait), and so is a `udp://` group (multicast cannot be held back).
    /// While paused the connections are not read, so a peer whose heartbeat TTL is
    /// shorter than the pause closes the connection.
    pub policy: OverflowPolicy,
    /// How `recv` waits.
    pub recv_mode: RecvMode,
    /// First reconnect delay; it doubles up to `reconnect_max`, with jitter. Default 100 ms.
    pub reconnect_initial: Duration,
    /// Longest reconnect delay. Default 5 s.
    pub reconnect_max: Duration,
    /// Send PINGs on idle connections at this interval and drop peers silent for longer
    /// than `heartbeat_timeout` after one. Default off (PINGs are always answered).
    pub heartbeat_interval: Option<Duration>,
    /// How long an unanswered PING may wait. Default: the interval.
    pub heartbeat_timeout: Option<Duration>,
    /// Largest accepted incoming message (all frames); larger ones close the connection
    /// and are counted. Default 1 MiB. (Multicast members use
    /// [`MulticastOptions`]' own limits.)
    pub max_message_size: u64,
    /// How `udp://` members behave.
    pub multicast: MulticastOptions,
}

impl SocketOptions {
    /// Whether a receiving socket with these options holds its senders back when its
    /// queue is full (Block) instead of dropping.
    pub(crate) fn holds_senders_back(&self) -> bool {
        matches!(self.policy, OverflowPolicy::Block { .. })
    }
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            queue_capacity: 1000,
            policy: OverflowPolicy::DropNewest,
            recv_mode: RecvMode::Blocking,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            heartbeat_interval: None,
            heartbeat_timeout: None,
            max_message_size: crate::proto::zmtp::DEFAULT_MAX_MESSAGE_SIZE,
            multicast: MulticastOptions::default(),
        }
    }
}

/// Errors of socket operations.
#[derive(Debug)]
pub enum Error {
    /// The endpoint string could not be used; the text says why.
    InvalidEndpoint(String),
    /// An option value that cannot work; the text says why.
    InvalidOption(String),
    /// The operating system refused (bind in use, connect refused, ...).
    Io(io::Error),
    /// The I/O thread is gone (its context was shut down).
    ContextGone,
    /// Every producer of the queue is gone: the socket is closed.
    Closed,
    /// A message larger than a limit of the transport; nothing was sent.
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidEndpoint(why) => write!(f, "invalid endpoint {why}"),
            Error::InvalidOption(why) => write!(f, "invalid option: {why}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::ContextGone => f.write_str("the volley I/O thread is gone"),
            Error::Closed => f.write_str("socket closed"),
            Error::TooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// Counters of one socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Messages written to peers.
    pub messages_out: u64,
    /// Payload bytes (all frames) written to peers.
    pub bytes_out: u64,
    /// Messages received from peers.
    pub messages_in: u64,
    /// Payload bytes received from peers.
    pub bytes_in: u64,
    /// Messages dropped by a queue's overflow policy (newest refused, oldest evicted,
    /// timed out), over all queues of the socket, including closed peers'.
    pub dropped: u64,
    /// Successful reconnects after a connection was lost.
    pub reconnects: u64,
    /// Connections closed for a protocol error (malformed input, wrong socket type,
    /// heartbeat timeout, ...).
    pub protocol_errors: u64,
    /// Of those, connections closed for a message above the size limit.
    pub oversized: u64,
    /// Peers connected (handshake done) now.
    pub peers: u64,
    /// Sends that waited for room under [`OverflowPolicy::Block`]
    /// (backpressure), over all queues of the socket, including closed peers'; a
    /// round-robin send that waited for any peer to have room counts once.
    pub blocked: u64,
    /// Time those sends spent waiting.
    ///
    /// At a receiving socket under Block, `blocked` counts the times its full queue
    /// paused reading its connections and `blocked_time` the time those pauses lasted
    /// (once each has ended).
    pub blocked_time: std::time::Duration,
}

/// Counters of one peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's address.
    pub peer: String,
    /// Messages written to this peer.
    pub messages_out: u64,
    /// Payload bytes written to this peer.
    pub bytes_out: u64,
    /// Messages received from this peer.
    pub messages_in: u64,
    /// Payload bytes received from this peer.
    pub bytes_in: u64,
    /// This peer's outbound queue at a publisher (drops by policy, depth).
    pub queue: Option<RingStats>,
}

/// State of one socket shared between its handle and the I/O thread.
#[derive(Debug, Default)]
pub(crate) struct SocketShared {
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) oversized: AtomicU64,
    /// The connected peers, kept by the I/O thread (added at READY, removed at close).
    pub(crate) peer_list: Mutex<Vec<Arc<PeerShared>>>,
    /// Bumped by the I/O thread after it sent a publisher a new peer, or a busy-polling
    /// subscriber a connection to read: the handle looks at the channel only when this
    /// moved (one load instead of a channel poll per send or per poll).
    pub(crate) attached: AtomicU64,
    /// A receiving socket under Block: the I/O thread holds messages its full queue had
    /// no room for and reads none of the socket's connections until the application
    /// makes room (it then clears this and kicks the I/O thread).
    pub(crate) read_paused: crate::ring::ReadPause,
    /// Pauses that ended, and how long they lasted in total (nanoseconds).
    pub(crate) read_pauses: AtomicU64,
    pub(crate) read_paused_nanos: AtomicU64,
}

impl SocketShared {
    pub(crate) fn add_peer(&self, peer: &Arc<PeerShared>) {
        if let Ok(mut list) = self.peer_list.lock() {
            list.push(peer.clone());
        }
    }

    pub(crate) fn remove_peer(&self, peer: &Arc<PeerShared>) {
        if let Ok(mut list) = self.peer_list.lock() {
            list.retain(|p| !Arc::ptr_eq(p, peer));
        }
    }

    pub(crate) fn peer_stats(&self) -> Vec<PeerStats> {
        match self.peer_list.lock() {
            Ok(list) => list.iter().map(|p| p.stats(None)).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub(crate) fn stats(&self) -> SocketStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SocketStats {
            messages_out: r(&self.messages_out),
            bytes_out: r(&self.bytes_out),
            messages_in: r(&self.messages_in),
            bytes_in: r(&self.bytes_in),
            dropped: 0,
            reconnects: r(&self.reconnects),
            protocol_errors: r(&self.protocol_errors),
            oversized: r(&self.oversized),
            peers: self.peer_list.lock().map_or(0, |l| l.len() as u64),
            blocked: r(&self.read_pauses),
            blocked_time: Duration::from_nanos(r(&self.read_paused_nanos)),
        }
    }
}

/// State of one peer connection shared between a publisher handle and the I/O thread.
#[derive(Debug)]
pub(crate) struct PeerShared {
    pub(crate) peer: String,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    /// Bytes the session holds that the socket has not taken yet.
    pub(crate) unsent_bytes: AtomicU64,
    /// Bumped by the I/O thread after each change of `subscriptions`.
    pub(crate) subscriptions_version: AtomicU64,
    pub(crate) subscriptions: Mutex<Arc<SubscriptionTable>>,
}

impl PeerShared {
    pub(crate) fn new(peer: String) -> PeerShared {
        PeerShared {
            peer,
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            unsent_bytes: AtomicU64::new(0),
            subscriptions_version: AtomicU64::new(0),
            subscriptions: Mutex::new(Arc::new(SubscriptionTable::new())),
        }
    }

    pub(crate) fn stats(&self, queue: Option<RingStats>) -> PeerStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PeerStats {
            peer: self.peer.clone(),
            messages_out: r(&self.messages_out),
            bytes_out: r(&self.bytes_out),
            messages_in: r(&self.messages_in),
            bytes_in: r(&self.bytes_in),
            queue,
        }
    }

    pub(crate) fn subscriptions(&self) -> Arc<SubscriptionTable> {
        match self.subscriptions.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// What every socket handle holds: its I/O thread, its id there, and the counters it
/// shares with that thread. Dropping it closes the socket in the I/O thread.
pub(crate) struct SocketHandle {
    pub(crate) context: Context,
    pub(crate) id: SocketId,
    pub(crate) shared: Arc<SocketShared>,
}

impl SocketHandle {
    fn open(
        context: &Context,
        role: Role,
        socket_type: SocketType,
        options: SocketOptions,
    ) -> Result<SocketHandle, Error> {
        let id = context.next_socket_id();
        let shared = Arc::new(SocketShared::default());
        context.command(Command::Open {
            id,
            role,
            socket_type,
            options: Box::new(options),
            shared: shared.clone(),
        })?;
        Ok(SocketHandle {
            context: context.clone(),
            id,
            shared,
        })
    }

    fn bind(&self, endpoint: &str) -> Result<Endpoint, Error> {
        bind(&self.context, self.id, endpoint)
    }

    fn connect(&self, endpoint: &str) -> Result<(), Error> {
        connect(&self.context, self.id, endpoint)
    }
}

impl Drop for SocketHandle {
    fn drop(&mut self) {
        let _ = self.context.command(Command::Close { id: self.id });
    }
}

fn check_capacity(options: &SocketOptions) -> Result<(), Error> {
    if options.queue_capacity == 0 {
        return Err(Error::InvalidOption(
            "queue_capacity must be at least 1".into(),
        ));
    }
    Ok(())
}

fn bind(context: &Context, id: SocketId, endpoint: &str) -> Result<Endpoint, Error> {
    let endpoint: Endpoint = endpoint.parse()?;
    let (reply, answer) = crossbeam_channel::bounded(1);
    context.command(Command::Bind {
        id,
        endpoint,
        reply,
    })?;
    answer.recv().map_err(|_| Error::ContextGone)?
}

fn connect(context: &Context, id: SocketId, endpoint: &str) -> Result<(), Error> {
    let endpoint: Endpoint = endpoint.parse()?;
    let target = match &endpoint {
        Endpoint::Tcp { host, .. } if host == "*" => {
            return Err(Error::InvalidEndpoint(format!(
                "{endpoint}: cannot connect to * (name a host)"
            )))
        }
        Endpoint::Tcp { .. } => ConnectTarget::Tcp(endpoint.socket_addrs()?[0]),
        Endpoint::Ipc(path) => ConnectTarget::Unix(path.clone()),
        Endpoint::Udp(_) => {
            return Err(Error::InvalidEndpoint(format!(
                "{endpoint}: a multicast group is joined, not connected to"
            )))
        }
    };
    context.command(Command::Connect { id, target })
}
