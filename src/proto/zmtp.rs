//! One ZMTP 3.x connection as a sans-IO state machine.
//!
//! A [`Session`] owns no socket, thread or clock (the shape of quinn-proto's
//! `Connection`): the driver hands it received bytes and the current time, and takes back
//! bytes to send ([`Session::write_to`]), application events ([`Session::poll_event`]) and
//! the next deadline ([`Session::poll_timeout`]).
//!
//! ```text
//!            handle_input(&mut BytesMut, now) ──► poll_event() -> Event
//!  socket ─►                                                               application
//!         ◄─ write_to(&mut impl Write) ◄── send_message / send_subscribe / send_cancel
//!            poll_timeout() / handle_timeout(now): handshake timeout, heartbeats
//! ```
//!
//! # Handshake
//!
//! [`Session::new`] queues the whole 64-byte greeting *and* our READY at once: with the
//! `NULL` mechanism nothing we send depends on the peer, and libzmq waits for our
//! signature before finishing its own greeting, so waiting on it would deadlock. The
//! peer's greeting is decoded incrementally and refused as early as possible (not ZMTP 3,
//! not `NULL`). Then its READY must come first; an incompatible socket type fails with
//! [`SessionError::IncompatibleSocketType`], and an ERROR command from the peer with
//! [`SessionError::PeerError`].
//!
//! Messages queued before the handshake completes are held back (never written) until the
//! peer's READY has been validated, so nothing leaks to a peer that is refused. When the
//! session refuses the handshake, it drops those held messages and queues an ERROR
//! command instead; the driver may flush it before closing.
//!
//! # Input: zero copy
//!
//! [`Session::handle_input`] consumes every complete unit from the caller's `BytesMut`
//! and leaves a trailing partial unit in place. Message frames are handed out as `Bytes`
//! split off that buffer, so receiving copies nothing; the flip side is that frames held
//! by the application keep their part of the receive buffer alive, and the buffer's next
//! `reserve` allocates afresh instead of reusing it. Subscription prefixes and identities,
//! which are small and may be kept for the connection's lifetime, are copied instead.
//!
//! The maximum message size is enforced from frame headers: a frame that would take the
//! message (all frames summed) above [`SessionConfig::max_message_size`] is refused before
//! its body arrives, so a peer cannot make the session buffer or allocate what it merely
//! declares.
//!
//! # Output: batching
//!
//! Frame headers, commands and bodies up to [`INLINE_BODY_MAX`] bytes are copied into one
//! contiguous batch buffer; larger bodies are queued as their own `Bytes` chunk (a
//! reference count, no copy). [`Session::write_to`] hands all queued chunks to
//! `write_vectored` at once, so a burst of small messages leaves in one system call and a
//! large payload fanned out to many peers is never copied. Once the buffers have grown to
//! the working set, sending small messages allocates nothing: written bytes are released
//! and the batch buffer's storage is reused.
//!
//! # Subscriptions
//!
//! [`Session::send_subscribe`] / [`Session::send_cancel`] use SUBSCRIBE/CANCEL commands
//! for peers that announced ZMTP 3.1, and the `0x01`/`0x00` data message form for 3.0
//! peers (libzmq ≤ 4.3.2), exactly as libzmq ≥ 4.3.3 does. Until the peer's greeting is
//! known, the choice is deferred by a placeholder in the output queue that keeps its
//! place in line. On input, commands are accepted from any peer, and a PUB/XPUB session
//! also reads `0x01`/`0x00` data frames as subscriptions, as libzmq does. Every received
//! subscription is both applied to [`Session::peer_subscriptions`] and reported as an
//! [`Event`].
//!
//! # Heartbeats
//!
//! Any received byte counts as liveness. With [`SessionConfig::heartbeat`] set, once per
//! interval the session sends a PING unless the connection was busy in *both* directions
//! during that interval; it fails with [`SessionError::HeartbeatTimeout`] when nothing
//! arrived within [`Heartbeat::timeout`] of an unanswered PING. A PING from the peer is
//! always answered with a PONG (libzmq 4.2 pings while announcing 3.0), and a TTL in it
//! is honoured: silence longer than the TTL fails the session too, whether or not local
//! heartbeats are configured.
//!
//! # Errors
//!
//! An error from [`Session::handle_input`] or [`Session::handle_timeout`] is final: every
//! later call returns the same error and the driver should close the connection (after
//! optionally flushing what [`Session::write_to`] still has). Events decoded before the
//! error remain available from [`Session::poll_event`].

use crate::proto::subscriptions::SubscriptionTable;
use crate::wire::zmtp::{
    decode_frame_header, put_frame_header, Command, Decoded, FrameHeader, FrameKind, Greeting,
    Ready, SocketType, Subscription, WireError, FLAG_COMMAND, FLAG_MORE, GREETING_LEN,
    SHORT_HEADER_LEN,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

/// Default [`SessionConfig::max_message_size`]: 1 MiB.
///
/// libzmq defaults to unlimited; volley carries telemetry, where a megabyte is already an
/// outlier, and the limit bounds what one misbehaving peer can make a process buffer.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;

/// Default [`SessionConfig::handshake_timeout`], libzmq's `ZMQ_HANDSHAKE_IVL` default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Message frame bodies up to this size are copied into the output batch; larger ones are
/// queued by reference.
///
/// Copying 4 KiB costs about as much as the reference count, the extra `iovec` and the
/// kernel's per-segment work it replaces, and keeps the `iovec` count of a burst low.
pub const INLINE_BODY_MAX: usize = 4096;

/// A frame body a [`Session`] can send: [`Bytes`], which a large frame is queued by
/// reference as, or borrowed bytes (`&[u8]`), which are copied into the output batch
/// whatever their size (the caller keeps its buffer, as with `zmq_send`).
pub trait FrameBody: AsRef<[u8]> {
    /// The body as shared `Bytes` without copying it, if it is held that way.
    fn shared(&self) -> Option<Bytes>;
}

impl FrameBody for Bytes {
    fn shared(&self) -> Option<Bytes> {
        Some(self.clone())
    }
}

impl FrameBody for &[u8] {
    fn shared(&self) -> Option<Bytes> {
        None
    }
}

/// Command frames may always be this large, even under a smaller message size limit, so
/// that a tiny limit does not break READY (which carries metadata) or subscriptions.
const MIN_COMMAND_LIMIT: u64 = 64 * 1024;

/// Upper bound of `iovec`s per `write_vectored` call (Linux allows 1024).
const MAX_IOV: usize = 64;

/// Initial capacity of the output batch buffer (greeting + READY + a few messages).
const INITIAL_BATCH_CAPACITY: usize = 1024;

/// Heartbeat settings (libzmq's `ZMQ_HEARTBEAT_IVL`, `_TTL` and `_TIMEOUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Send a PING when the connection was not busy both ways for this long. Zero
    /// disables heartbeats.
    pub interval: Duration,
    /// Announced in our PINGs: the peer may close if it hears nothing from us for this
    /// long. Sent in deciseconds, rounded up, saturating at 6553.5 s; zero announces none.
    pub ttl: Duration,
    /// Fail when nothing arrives for this long after an unanswered PING.
    pub timeout: Duration,
}

impl Heartbeat {
    /// `interval` with libzmq's default timeout (one interval) and a TTL of three
    /// intervals, which a peer following our PINGs never trips.
    pub fn new(interval: Duration) -> Heartbeat {
        Heartbeat {
            interval,
            ttl: interval.saturating_mul(3),
            timeout: interval,
        }
    }

    fn ttl_deciseconds(&self) -> u16 {
        u16::try_from(self.ttl.as_millis().div_ceil(100)).unwrap_or(u16::MAX)
    }
}

/// Configuration of one [`Session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our socket type, announced in READY and checked against the peer's.
    pub socket_type: SocketType,
    /// Routing identity announced in READY (libzmq only reads it on ROUTER sockets).
    pub identity: Option<Bytes>,
    /// Largest accepted incoming message, all frames summed (default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]). Outgoing messages are not limited.
    pub max_message_size: u64,
    /// Heartbeats; `None` (the default) sends no PINGs, but PINGs from the peer are still
    /// answered and their TTL honoured.
    pub heartbeat: Option<Heartbeat>,
    /// Fail if the peer's greeting and READY have not arrived this long after
    /// [`Session::new`] (default [`DEFAULT_HANDSHAKE_TIMEOUT`]); `None` waits forever.
    pub handshake_timeout: Option<Duration>,
    /// Minor version announced in the greeting: 1 (ZMTP 3.1, the default) or 0 to act as
    /// a ZMTP 3.0 peer.
    pub greeting_minor: u8,
}

impl SessionConfig {
    /// Defaults for a socket of type `socket_type`.
    pub fn new(socket_type: SocketType) -> SessionConfig {
        SessionConfig {
            socket_type,
            identity: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            heartbeat: None,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            greeting_minor: crate::wire::zmtp::DEFAULT_MINOR_VERSION,
        }
    }
}

/// A multipart message.
///
/// Up to two frames (a topic and a payload, the common shape) are held in the message
/// itself: making, receiving and dropping one allocates nothing beyond the frames' own
/// buffers.
#[derive(Clone, Default)]
pub struct Message {
    frames: Frames,
}

/// A message's frames. Two frames fill all 64 bytes (one cache line, as a ring slot);
/// fewer or more take the other variant, which the compiler tags through a niche of the
/// pair's bytes, so no separate tag widens the type. Held inline, `len` plus two frames
/// took 72 bytes: every message moved through a ring then spanned two cache lines.
#[derive(Clone)]
enum Frames {
    Pair([Bytes; 2]),
    Other(OtherFrames),
}

#[derive(Clone)]
enum OtherFrames {
    /// No frame or one.
    Few(Option<Bytes>),
    /// Three frames or more.
    Heap(Vec<Bytes>),
}

impl Default for Frames {
    fn default() -> Frames {
        Frames::Other(OtherFrames::Few(None))
    }
}

impl Message {
    /// A message of the two frames `first` and `second`.
    fn pair(first: Bytes, second: Bytes) -> Message {
        Message {
            frames: Frames::Pair([first, second]),
        }
    }

    /// A message made of `frames`.
    pub fn new(mut frames: Vec<Bytes>) -> Message {
        match frames.len() {
            0 | 1 => Message {
                frames: Frames::Other(OtherFrames::Few(frames.pop())),
            },
            2 => {
                let second = frames.pop().unwrap_or_default();
                Message::pair(frames.pop().unwrap_or_default(), second)
            }
            _ => Message {
                frames: Frames::Other(OtherFrames::Heap(frames)),
            },
        }
    }

    /// A two-frame message, `topic` then `payload`, without an allocation for the list.
    pub fn with_topic(topic: Bytes, payload: Bytes) -> Message {
        Message::pair(topic, payload)
    }

    /// A one-frame message, built whole.
    pub(crate) fn single(frame: Bytes) -> Message {
        Message {
            frames: Frames::Other(OtherFrames::Few(Some(frame))),
        }
    }

    /// Appends a frame.
    pub fn push_frame(&mut self, frame: Bytes) {
        match &mut self.frames {
            Frames::Other(OtherFrames::Few(slot)) => match slot.take() {
                None => *slot = Some(frame),
                Some(first) => self.frames = Frames::Pair([first, frame]),
            },
            Frames::Pair(pair) => {
                let mut v = Vec::with_capacity(4);
                v.extend(pair.iter_mut().map(std::mem::take));
                v.push(frame);
                self.frames = Frames::Other(OtherFrames::Heap(v));
            }
            Frames::Other(OtherFrames::Heap(v)) => v.push(frame),
        }
    }

    /// The frames, in order (at least one for a received message).
    pub fn frames(&self) -> &[Bytes] {
        match &self.frames {
            Frames::Pair(pair) => pair,
            Frames::Other(OtherFrames::Few(frame)) => frame.as_slice(),
            Frames::Other(OtherFrames::Heap(v)) => v,
        }
    }

    /// The frames, by value.
    pub fn into_frames(self) -> Vec<Bytes> {
        match self.frames {
            Frames::Pair(pair) => pair.into(),
            Frames::Other(OtherFrames::Few(frame)) => frame.into_iter().collect(),
            Frames::Other(OtherFrames::Heap(v)) => v,
        }
    }

    /// Whether the message has no frame.
    pub fn is_empty(&self) -> bool {
        self.frames().is_empty()
    }

    /// The first frame, which subscriptions match against (empty if there is none).
    pub fn topic(&self) -> &[u8] {
        self.frames().first().map_or(&[], |frame| frame)
    }

    /// Sum of the frame sizes.
    pub fn byte_len(&self) -> usize {
        self.frames().iter().map(Bytes::len).sum()
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.frames() == other.frames()
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("frames", &self.frames())
            .finish()
    }
}

impl From<Vec<Bytes>> for Message {
    fn from(frames: Vec<Bytes>) -> Message {
        Message::new(frames)
    }
}

/// Something the peer did that the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed; always the first event.
    Ready {
        /// The peer's socket type (compatible with ours).
        peer_socket_type: SocketType,
        /// The minor version from the peer's greeting (0: ZMTP 3.0, 1: ZMTP 3.1).
        peer_minor: u8,
        /// The `Identity` property of the peer's READY, if any.
        peer_identity: Option<Bytes>,
    },
    /// A complete multipart message.
    Message(Message),
    /// The peer added a reference to a topic prefix.
    Subscribe(Bytes),
    /// The peer dropped a reference to a topic prefix (reported even when it held none).
    Cancel(Bytes),
}

/// Why a [`Session`] failed. Every variant is final for the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The peer sent bytes that are not valid ZMTP (see [`WireError`]).
    Wire(WireError),
    /// The peer's socket type may not talk to ours (e.g. PUB with PUB).
    IncompatibleSocketType {
        /// Our socket type.
        ours: SocketType,
        /// The type the peer announced.
        theirs: SocketType,
    },
    /// The peer sent an ERROR command.
    PeerError {
        /// The reason it gave (lossily decoded as UTF-8).
        reason: String,
    },
    /// An incoming message exceeds [`SessionConfig::max_message_size`].
    MessageTooLarge {
        /// Size of the message so far, including the frame being announced (a lower
        /// bound of the whole message).
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The peer was silent past the heartbeat timeout or the TTL it announced.
    HeartbeatTimeout {
        /// How long nothing had arrived.
        silent_for: Duration,
    },
    /// The peer did not complete the greeting and READY within the handshake timeout.
    HandshakeTimeout,
    /// The peer sent a command that is not allowed at this point (anything but READY or
    /// ERROR before the handshake, READY after it).
    UnexpectedCommand {
        /// The command's name.
        name: String,
    },
    /// The peer sent a message frame before its READY.
    MessageBeforeReady,
    /// [`Session::send_message`] was called without frames.
    EmptyMessage,
}

impl SessionError {
    /// Errors that refuse a peer during the handshake, worth an ERROR command.
    fn refuses_handshake(&self) -> bool {
        matches!(
            self,
            SessionError::Wire(_)
                | SessionError::IncompatibleSocketType { .. }
                | SessionError::UnexpectedCommand { .. }
                | SessionError::MessageBeforeReady
        )
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Wire(err) => write!(f, "ZMTP protocol error: {err}"),
            SessionError::IncompatibleSocketType { ours, theirs } => write!(
                f,
                "incompatible socket types: a {ours} socket cannot talk to a {theirs} peer"
            ),
            SessionError::PeerError { reason } => {
                write!(f, "peer closed the connection with ERROR: {reason:?}")
            }
            SessionError::MessageTooLarge { size, max } => write!(
                f,
                "incoming message of at least {size} bytes exceeds the limit of {max} bytes"
            ),
            SessionError::HeartbeatTimeout { silent_for } => {
                write!(
                    f,
                    "heartbeat timeout: nothing received from the peer for {silent_for:?}"
                )
            }
            SessionError::HandshakeTimeout => {
                f.write_str("handshake timeout: the peer did not complete the ZMTP handshake")
            }
            SessionError::UnexpectedCommand { name } => {
                write!(f, "unexpected {name:?} command from the peer")
            }
            SessionError::MessageBeforeReady => {
                f.write_str("peer sent a message before completing the handshake")
            }
            SessionError::EmptyMessage => f.write_str("a message needs at least one frame"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Wire(err) => Some(err),
            _ => None,
        }
    }
}

impl From<WireError> for SessionError {
    fn from(err: WireError) -> SessionError {
        SessionError::Wire(err)
    }
}

// ---------------------------------------------------------------------------------------
// Output queue
// ---------------------------------------------------------------------------------------

enum Chunk {
    /// Bytes ready to go; never empty.
    Data(Bytes),
    /// A subscription change whose encoding waits for the peer's minor version.
    Subscription { subscribe: bool, prefix: Bytes },
    /// Nothing after this leaves before the peer's READY is validated.
    Gate,
}

/// Chunks in order, followed (logically) by the batch buffer.
///
/// Small output is appended to `batch`; queuing a large body or a placeholder first seals
/// the batch into a `Data` chunk (a split of the same allocation, no copy) so that the
/// order on the wire is the order of the calls. Writing stops at the first placeholder.
struct OutQueue {
    chunks: VecDeque<Chunk>,
    batch: BytesMut,
}

impl OutQueue {
    fn new() -> OutQueue {
        OutQueue {
            chunks: VecDeque::new(),
            batch: BytesMut::with_capacity(INITIAL_BATCH_CAPACITY),
        }
    }

    fn seal_batch(&mut self) {
        if !self.batch.is_empty() {
            self.chunks
                .push_back(Chunk::Data(self.batch.split().freeze()));
        }
    }

    fn push(&mut self, chunk: Chunk) {
        if matches!(&chunk, Chunk::Data(data) if data.is_empty()) {
            return;
        }
        self.seal_batch();
        self.chunks.push_back(chunk);
    }

    fn fill<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for chunk in &self.chunks {
            let (Chunk::Data(data), Some(slot)) = (chunk, slices.get_mut(count)) else {
                return count;
            };
            *slot = IoSlice::new(data);
            count += 1;
        }
        if let (false, Some(slot)) = (self.batch.is_empty(), slices.get_mut(count)) {
            *slot = IoSlice::new(&self.batch);
            count += 1;
        }
        count
    }

    fn consume(&mut self, mut written: usize) {
        while written > 0 {
            match self.chunks.front_mut() {
                Some(Chunk::Data(data)) => {
                    if written >= data.len() {
                        written -= data.len();
                        self.chunks.pop_front();
                    } else {
                        data.advance(written);
                        return;
                    }
                }
                // A writer claiming more than it was given; nothing sensible to do.
                Some(_) => return,
                None => {
                    self.batch.advance(written.min(self.batch.len()));
                    return;
                }
            }
        }
    }

    fn writable(&self) -> bool {
        match self.chunks.front() {
            Some(Chunk::Data(_)) => true,
            Some(_) => false,
            None => !self.batch.is_empty(),
        }
    }

    fn queued_len(&self) -> usize {
        let chunks: usize = self
            .chunks
            .iter()
            .map(|chunk| match chunk {
                Chunk::Data(data) => data.len(),
                // Upper bound of either encoding (long command header, name, prefix).
                Chunk::Subscription { prefix, .. } => prefix.len().saturating_add(19),
                Chunk::Gate => 0,
            })
            .sum();
        chunks.saturating_add(self.batch.len())
    }

    fn resolve_subscriptions(&mut self, peer_minor: u8) {
        for chunk in &mut self.chunks {
            if let Chunk::Subscription { subscribe, prefix } = chunk {
                let mut encoded = BytesMut::new();
                put_subscription(&mut encoded, peer_minor, *subscribe, prefix);
                *chunk = Chunk::Data(encoded.freeze());
            }
        }
    }

    fn open_gate(&mut self) {
        if let Some(i) = self.chunks.iter().position(|c| matches!(c, Chunk::Gate)) {
            self.chunks.remove(i);
        }
    }

    /// Drops the gate and everything queued behind it.
    fn discard_gated(&mut self) {
        if let Some(i) = self.chunks.iter().position(|c| matches!(c, Chunk::Gate)) {
            self.chunks.truncate(i);
            self.batch.clear();
        }
    }
}

fn put_subscription(dst: &mut BytesMut, peer_minor: u8, subscribe: bool, prefix: &[u8]) {
    let sub = if subscribe {
        Subscription::Subscribe(prefix)
    } else {
        Subscription::Cancel(prefix)
    };
    if peer_minor >= 1 {
        sub.encode_command(dst);
    } else {
        sub.encode_message(dst);
    }
}

fn reached(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|deadline| now >= deadline)
}

// ---------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's 64-byte greeting.
    Greeting,
    /// Greeting received; waiting for the peer's READY.
    Handshake,
    /// Handshake done: messages, subscriptions, heartbeats.
    Ready,
}

/// The state machine of one ZMTP 3.x connection (NULL mechanism). See the
/// [module documentation](self) for the design.
///
/// # Implementation notes
///
/// - The driver must call [`Session::write_to`] whenever [`Session::has_output`] is true
///   after any call, including [`Session::handle_input`] (PONGs, deferred subscriptions
///   and held messages can become writable there) and [`Session::handle_timeout`] (PINGs).
/// - Events queue up until polled; a driver that stops polling stops reading too.
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    failed: Option<SessionError>,
    peer_minor: Option<u8>,
    peer_socket_type: Option<SocketType>,
    events: VecDeque<Event>,
    /// Frames of the message being received, and their total size.
    partial: Message,
    partial_size: u64,
    peer_subscriptions: SubscriptionTable,
    out: OutQueue,
    /// A gate is (or was) queued; later pre-handshake messages queue behind it.
    gate_queued: bool,
    /// Bytes left in the caller's buffer by the last `handle_input`, to tell new input
    /// from a repeated call.
    input_left: usize,
    last_received: Instant,
    handshake_deadline: Option<Instant>,
    last_ping_check: Instant,
    ping_outstanding: Option<Instant>,
    received_since_check: bool,
    sent_since_check: bool,
    /// Armed by a PING with a TTL, disarmed by any later input (libzmq's TTL timer).
    ttl_deadline: Option<Instant>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("socket_type", &self.config.socket_type)
            .field("phase", &self.phase)
            .field("failed", &self.failed)
            .field("peer_minor", &self.peer_minor)
            .field("peer_socket_type", &self.peer_socket_type)
            .field("queued_len", &self.out.queued_len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session; the greeting and our READY are queued for output immediately.
    pub fn new(config: SessionConfig, now: Instant) -> Session {
        let mut out = OutQueue::new();
        out.batch
            .put_slice(&Greeting::null(config.greeting_minor).encode());
        Command::Ready(Ready {
            socket_type: config.socket_type,
            identity: config.identity.as_deref(),
        })
        .encode(&mut out.batch);
        Session {
            handshake_deadline: config
                .handshake_timeout
                .and_then(|timeout| now.checked_add(timeout)),
            config,
            phase: Phase::Greeting,
            failed: None,
            peer_minor: None,
            peer_socket_type: None,
            events: VecDeque::new(),
            partial: Message::default(),
            partial_size: 0,
            peer_subscriptions: SubscriptionTable::new(),
            out,
            gate_queued: false,
            input_left: 0,
            last_received: now,
            last_ping_check: now,
            ping_outstanding: None,
            received_since_check: false,
            sent_since_check: false,
            ttl_deadline: None,
        }
    }

    /// The configuration the session was created with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// True once the peer's READY was accepted, until the session fails.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready && self.failed.is_none()
    }

    /// The minor version of the peer's greeting, once received.
    pub fn peer_minor(&self) -> Option<u8> {
        self.peer_minor
    }

    /// The peer's socket type, once its READY was accepted.
    pub fn peer_socket_type(&self) -> Option<SocketType> {
        self.peer_socket_type
    }

    /// The error that ended the session, if any.
    pub fn error(&self) -> Option<&SessionError> {
        self.failed.as_ref()
    }

    /// What the peer is subscribed to (on a PUB/XPUB session: which messages it wants).
    pub fn peer_subscriptions(&self) -> &SubscriptionTable {
        &self.peer_subscriptions
    }

    /// Consumes every complete greeting, command and frame from `input`, leaving a
    /// trailing partial unit in place for the next call. `now` is when the bytes arrived;
    /// new bytes count as the peer's liveness.
    pub fn handle_input(&mut self, input: &mut BytesMut, now: Instant) -> Result<(), SessionError> {
        self.handle_input_inner(input, now, None)
    }

    /// Like [`Session::handle_input`], but each complete message goes to `on_message` as
    /// it is decoded instead of into the event queue (other events still queue). Saves
    /// a driver that only forwards messages a queue push and pop per message. Messages
    /// reach `on_message` before the caller has seen events queued by the same call (the
    /// `Ready` that precedes them on the wire, for one).
    pub fn handle_input_with(
        &mut self,
        input: &mut BytesMut,
        now: Instant,
        on_message: &mut dyn FnMut(Message),
    ) -> Result<(), SessionError> {
        self.handle_input_inner(input, now, Some(on_message))
    }

    fn handle_input_inner(
        &mut self,
        input: &mut BytesMut,
        now: Instant,
        mut on_message: Option<&mut dyn FnMut(Message)>,
    ) -> Result<(), SessionError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if input.len() != self.input_left {
            self.last_received = now;
            self.received_since_check = true;
            self.ping_outstanding = None;
            self.ttl_deadline = None;
        }
        let result = self.process_input(input, now, &mut on_message);
        self.input_left = input.len();
        if let Err(err) = &result {
            self.fail(err.clone());
        }
        result
    }

    fn process_input(
        &mut self,
        input: &mut BytesMut,
        now: Instant,
        on_message: &mut Option<&mut dyn FnMut(Message)>,
    ) -> Result<(), SessionError> {
        loop {
            if self.phase == Phase::Greeting {
                match Greeting::decode(input)? {
                    Decoded::NeedMore(_) => return Ok(()),
                    Decoded::Done(greeting) => {
                        input.advance(GREETING_LEN);
                        self.peer_minor = Some(greeting.minor);
                        self.out.resolve_subscriptions(greeting.minor);
                        self.phase = Phase::Handshake;
                        continue;
                    }
                }
            }
            if self.phase == Phase::Ready {
                self.take_data_frames(input, on_message);
            }
            // Before READY every frame is held to the command limit: a message frame is
            // refused whatever its size.
            let command_limit = self.config.max_message_size.max(MIN_COMMAND_LIMIT);
            let data_frame = self.phase == Phase::Ready
                && input
                    .first()
                    .is_some_and(|&flags| flags & FLAG_COMMAND == 0);
            let limit = if data_frame {
                self.config
                    .max_message_size
                    .saturating_sub(self.partial_size)
            } else {
                command_limit
            };
            let header = match decode_frame_header(input, limit) {
                Ok(Decoded::NeedMore(_)) => return Ok(()),
                Ok(Decoded::Done(header)) => header,
                Err(WireError::FrameTooLarge { declared, .. }) if data_frame => {
                    return Err(SessionError::MessageTooLarge {
                        size: self.partial_size.saturating_add(declared),
                        max: self.config.max_message_size,
                    })
                }
                Err(err) => return Err(err.into()),
            };
            if self.phase != Phase::Ready && !header.kind.is_command() {
                return Err(SessionError::MessageBeforeReady);
            }
            if input.len() < header.frame_len() {
                return Ok(());
            }
            input.advance(header.header_len);
            let body = input.split_to(header.body_len).freeze();
            // Traffic after a PING disarms its TTL; a PING in this frame re-arms it.
            self.ttl_deadline = None;
            match header.kind {
                FrameKind::Command => self.on_command(&body, now)?,
                FrameKind::Message { more } => self.on_message_frame(body, more, on_message),
            }
        }
    }

    /// The fast path of a ready session that receives messages: the run of complete data
    /// frames at the front of `input` within the size limit is split off in one piece,
    /// and each body handed on as a slice of it. A `BytesMut::split_to` per frame cost
    /// 68 instructions (callgrind, 64 B messages of two frames); a slice costs a
    /// reference count. Stops at anything else (a command, an incomplete frame, one the
    /// limit or the header checks refuse), which the general loop then decodes and
    /// reports exactly as before. Publishers, which read subscriptions from data
    /// frames, take the general loop only.
    fn take_data_frames(
        &mut self,
        input: &mut BytesMut,
        on_message: &mut Option<&mut dyn FnMut(Message)>,
    ) {
        if matches!(self.config.socket_type, SocketType::Pub | SocketType::XPub) {
            return;
        }
        let mut end = 0;
        let mut partial_size = self.partial_size;
        while let Some(frame) = input.get(end..).and_then(|rest| {
            complete_data_frame(
                rest,
                self.config.max_message_size.saturating_sub(partial_size),
            )
        }) {
            // As `on_message_frame` counts it: the frames of the message so far.
            partial_size = if frame.kind.more() {
                partial_size.saturating_add(frame.body_len as u64)
            } else {
                0
            };
            end += frame.header_len + frame.body_len;
        }
        if end == 0 {
            return;
        }
        self.ttl_deadline = None;
        let frames = input.split_to(end).freeze();
        // Walked again: the headers were checked above, and a second decode costs less
        // than keeping where each body lay.
        let mut at = 0;
        while let Some(frame) = frames
            .get(at..)
            .and_then(|rest| complete_data_frame(rest, u64::MAX))
        {
            let body_at = at + frame.header_len;
            at = body_at + frame.body_len;
            let body = frames.slice(body_at..at);
            if frame.kind.more() && self.partial.is_empty() {
                // A message of exactly two frames, both in this run (the common topic +
                // payload shape): built in place and handed on, instead of each frame
                // going through `partial` and the message being taken out of it.
                if let Some(last) = frames
                    .get(at..)
                    .and_then(|rest| complete_data_frame(rest, u64::MAX))
                    .filter(|last| !last.kind.more())
                {
                    let payload_at = at + last.header_len;
                    at = payload_at + last.body_len;
                    let payload = frames.slice(payload_at..at);
                    self.deliver(Message::pair(body, payload), on_message);
                    continue;
                }
            }
            self.on_message_frame(body, frame.kind.more(), on_message);
        }
    }

    fn on_command(&mut self, body: &[u8], now: Instant) -> Result<(), SessionError> {
        let command = Command::decode(body)?;
        if let Command::Error { reason } = command {
            return Err(SessionError::PeerError {
                reason: String::from_utf8_lossy(reason).into_owned(),
            });
        }
        if self.phase != Phase::Ready {
            let Command::Ready(ready) = command else {
                return Err(unexpected(&command));
            };
            if !self.config.socket_type.is_compatible(ready.socket_type) {
                return Err(SessionError::IncompatibleSocketType {
                    ours: self.config.socket_type,
                    theirs: ready.socket_type,
                });
            }
            self.phase = Phase::Ready;
            self.peer_socket_type = Some(ready.socket_type);
            self.handshake_deadline = None;
            self.last_ping_check = now;
            self.out.open_gate();
            self.events.push_back(Event::Ready {
                peer_socket_type: ready.socket_type,
                peer_minor: self.peer_minor.unwrap_or_default(),
                peer_identity: ready.identity.map(Bytes::copy_from_slice),
            });
            return Ok(());
        }
        match command {
            Command::Subscribe(prefix) => self.on_subscription(Subscription::Subscribe(prefix)),
            Command::Cancel(prefix) => self.on_subscription(Subscription::Cancel(prefix)),
            Command::Ping {
                ttl_deciseconds,
                context,
            } => {
                self.ttl_deadline = (ttl_deciseconds > 0)
                    .then(|| {
                        now.checked_add(Duration::from_millis(u64::from(ttl_deciseconds) * 100))
                    })
                    .flatten();
                Command::Pong { context }.encode(&mut self.out.batch);
                self.sent_since_check = true;
            }
            Command::Pong { .. } | Command::Unknown { .. } => {}
            Command::Ready(_) | Command::Error { .. } => return Err(unexpected(&command)),
        }
        Ok(())
    }

    fn on_subscription(&mut self, subscription: Subscription<'_>) {
        let prefix = Bytes::copy_from_slice(subscription.prefix());
        match subscription {
            Subscription::Subscribe(_) => {
                self.peer_subscriptions.subscribe(&prefix);
                self.events.push_back(Event::Subscribe(prefix));
            }
            Subscription::Cancel(_) => {
                self.peer_subscriptions.cancel(&prefix);
                self.events.push_back(Event::Cancel(prefix));
            }
        }
    }

    fn on_message_frame(
        &mut self,
        body: Bytes,
        more: bool,
        on_message: &mut Option<&mut dyn FnMut(Message)>,
    ) {
        let publisher = matches!(self.config.socket_type, SocketType::Pub | SocketType::XPub);
        // Like libzmq's XPUB, every data frame from a subscriber is inspected, not just
        // the first of a message; no other socket looks.
        let subscription = if publisher {
            Subscription::from_message_body(&body)
        } else {
            None
        };
        match subscription {
            Some(subscription) => self.on_subscription(subscription),
            None => {
                self.partial_size = self.partial_size.saturating_add(body.len() as u64);
                self.partial.push_frame(body);
            }
        }
        if !more && !self.partial.is_empty() {
            self.partial_size = 0;
            let message = std::mem::take(&mut self.partial);
            self.deliver(message, on_message);
        }
    }

    /// Hands a complete message to the reader's callback, or queues it as an event.
    fn deliver(&mut self, message: Message, on_message: &mut Option<&mut dyn FnMut(Message)>) {
        match on_message {
            Some(deliver) => deliver(message),
            None => self.events.push_back(Event::Message(message)),
        }
    }

    fn fail(&mut self, err: SessionError) {
        if self.phase == Phase::Handshake && err.refuses_handshake() {
            self.out.discard_gated();
            let reason = err.to_string();
            Command::Error {
                reason: reason.as_bytes(),
            }
            .encode(&mut self.out.batch);
        }
        self.failed = Some(err);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queues a multipart message (MORE on all frames but the last).
    ///
    /// Allowed before the handshake completes: the message is held back until the peer's
    /// READY is accepted, and dropped if the peer is refused.
    pub fn send_message<F: FrameBody>(&mut self, frames: &[F]) -> Result<(), SessionError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let Some((last, init)) = frames.split_last() else {
            return Err(SessionError::EmptyMessage);
        };
        if self.phase != Phase::Ready && !self.gate_queued {
            self.out.push(Chunk::Gate);
            self.gate_queued = true;
        }
        for frame in init {
            self.queue_frame(frame, true);
        }
        self.queue_frame(last, false);
        self.sent_since_check = true;
        Ok(())
    }

    fn queue_frame<F: FrameBody>(&mut self, body: &F, more: bool) {
        let kind = FrameKind::Message { more };
        let bytes = body.as_ref();
        put_frame_header(&mut self.out.batch, kind, bytes.len());
        let shared = if bytes.len() > INLINE_BODY_MAX {
            body.shared()
        } else {
            None
        };
        match shared {
            Some(shared) => self.out.push(Chunk::Data(shared)),
            None => self.out.batch.put_slice(bytes),
        }
    }

    /// Subscribes the peer's publisher to messages whose first frame starts with
    /// `prefix` (counted: each call needs its own [`Session::send_cancel`]).
    pub fn send_subscribe(&mut self, prefix: &[u8]) {
        self.queue_subscription(true, prefix);
    }

    /// Drops one reference to `prefix` at the peer's publisher.
    pub fn send_cancel(&mut self, prefix: &[u8]) {
        self.queue_subscription(false, prefix);
    }

    fn queue_subscription(&mut self, subscribe: bool, prefix: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        match self.peer_minor {
            Some(minor) => put_subscription(&mut self.out.batch, minor, subscribe, prefix),
            None => self.out.push(Chunk::Subscription {
                subscribe,
                prefix: Bytes::copy_from_slice(prefix),
            }),
        }
        self.sent_since_check = true;
    }

    /// True when [`Session::write_to`] has bytes it can write now. Output held back
    /// (behind the handshake or a subscription waiting for the peer's version) does not
    /// count.
    pub fn has_output(&self) -> bool {
        self.out.writable()
    }

    /// Bytes queued for output, including held-back output (an upper bound for deferred
    /// subscriptions). Drivers can use it for backpressure.
    pub fn queued_len(&self) -> usize {
        self.out.queued_len()
    }

    /// Writes as much queued output as `w` accepts, many chunks per `write_vectored`
    /// call, and returns the number of bytes written.
    ///
    /// Returns `Ok` once everything writable is written. If `w` reports `WouldBlock`, the
    /// error is returned (even if some bytes went out first; [`Session::queued_len`]
    /// tells how many) and the rest stays queued for the next call. `Interrupted` is
    /// retried; a writer accepting zero bytes yields `WriteZero`.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        let mut total = 0usize;
        loop {
            let (result, offered, whole_queue) = if self.out.chunks.is_empty() {
                // Only small output waits (an isolated message's frames, copied in): one
                // plain write, without building the slice array for `writev`.
                if self.out.batch.is_empty() {
                    return Ok(total);
                }
                let batch = &self.out.batch[..];
                (w.write(batch), batch.len(), true)
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let count = self.out.fill(&mut slices);
                let Some(slices) = slices.get(..count).filter(|s| !s.is_empty()) else {
                    return Ok(total);
                };
                let offered: usize = slices.iter().map(|s| s.len()).sum();
                // Fewer slices than the array holds: `fill` reached the end of the queue
                // or a placeholder, so nothing more can go out after these.
                (w.write_vectored(slices), offered, count < MAX_IOV)
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.out.consume(written);
                    total = total.saturating_add(written);
                    // All that was on offer is gone: another round would only find that
                    // out again (an isolated message's send paid for it every time).
                    if whole_queue && written >= offered {
                        return Ok(total);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// The earliest instant at which [`Session::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() {
            return None;
        }
        if self.phase != Phase::Ready {
            return self.handshake_deadline;
        }
        let (ping_deadline, pong_deadline) = match self.heartbeat() {
            Some(hb) => (
                self.last_ping_check.checked_add(hb.interval),
                self.ping_outstanding
                    .and_then(|sent| sent.checked_add(hb.timeout)),
            ),
            None => (None, None),
        };
        [self.ttl_deadline, ping_deadline, pong_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    fn heartbeat(&self) -> Option<Heartbeat> {
        self.config.heartbeat.filter(|hb| !hb.interval.is_zero())
    }

    /// Runs the timers due at `now`: handshake timeout, peer silence (heartbeat timeout
    /// or the peer's TTL), and sending PINGs.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.run_timers(now);
        if let Err(err) = &result {
            self.fail(err.clone());
        }
        result
    }

    fn run_timers(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.phase != Phase::Ready {
            return match reached(self.handshake_deadline, now) {
                true => Err(SessionError::HandshakeTimeout),
                false => Ok(()),
            };
        }
        let silent_for = now.saturating_duration_since(self.last_received);
        if reached(self.ttl_deadline, now) {
            return Err(SessionError::HeartbeatTimeout { silent_for });
        }
        let Some(hb) = self.heartbeat() else {
            return Ok(());
        };
        if reached(
            self.ping_outstanding
                .and_then(|sent| sent.checked_add(hb.timeout)),
            now,
        ) {
            return Err(SessionError::HeartbeatTimeout { silent_for });
        }
        if reached(self.last_ping_check.checked_add(hb.interval), now) {
            // Traffic both ways already proves both ends alive to both ends.
            if !(self.received_since_check && self.sent_since_check) {
                Command::Ping {
                    ttl_deciseconds: hb.ttl_deciseconds(),
                    context: &[],
                }
                .encode(&mut self.out.batch);
                self.ping_outstanding.get_or_insert(now);
            }
            self.last_ping_check = now;
            self.received_since_check = false;
            self.sent_since_check = false;
        }
        Ok(())
    }
}

fn unexpected(command: &Command<'_>) -> SessionError {
    SessionError::UnexpectedCommand {
        name: String::from_utf8_lossy(command.name()).into_owned(),
    }
}

/// The header of the complete data frame at the start of `rest` whose body is at most
/// `limit` bytes, as [`Session::take_data_frames`] walks them; `None` for anything else
/// (a command, an incomplete or oversized frame, bad flags), which the general decoding
/// loop then reports. A short frame, the form of every small message, is read here
/// directly; only a LONG one goes through [`decode_frame_header`].
#[inline(always)]
fn complete_data_frame(rest: &[u8], limit: u64) -> Option<FrameHeader> {
    let &flags = rest.first()?;
    if flags & !FLAG_MORE == 0 {
        let body_len = usize::from(*rest.get(1)?);
        if body_len as u64 > limit || rest.len() < SHORT_HEADER_LEN + body_len {
            return None;
        }
        return Some(FrameHeader {
            kind: FrameKind::Message { more: flags != 0 },
            header_len: SHORT_HEADER_LEN,
            body_len,
        });
    }
    match decode_frame_header(rest, limit) {
        Ok(Decoded::Done(header)) if !header.kind.is_command() => {
            (rest.len() >= header.frame_len()).then_some(header)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_pair(ours: SocketType, theirs: SocketType) -> (Session, Instant) {
        let now = Instant::now();
        let mut session = Session::new(SessionConfig::new(ours), now);
        let mut input = BytesMut::new();
        input.put_slice(&Greeting::null(1).encode());
        Command::Ready(Ready {
            socket_type: theirs,
            identity: None,
        })
        .encode(&mut input);
        session.handle_input(&mut input, now).unwrap();
        assert!(session.is_ready());
        (session, now)
    }

    #[test]
    fn messages_keep_two_frames_inline_and_grow_past_them_intact() {
        let f = |s: &'static str| Bytes::from_static(s.as_bytes());
        let mut m = Message::default();
        assert!(m.is_empty());
        assert_eq!(m.topic(), b"");
        m.push_frame(f("a"));
        m.push_frame(f("bb"));
        assert_eq!(m, Message::with_topic(f("a"), f("bb")));
        assert_eq!(m, Message::new(vec![f("a"), f("bb")]));
        m.push_frame(f("ccc"));
        m.push_frame(f(""));
        assert_eq!(m.frames(), &[f("a"), f("bb"), f("ccc"), f("")][..]);
        assert_eq!((m.topic(), m.byte_len()), (&b"a"[..], 6));
        assert_eq!(m, Message::new(vec![f("a"), f("bb"), f("ccc"), f("")]));
        assert_ne!(m, Message::with_topic(f("a"), f("bb")));
        assert_eq!(m.clone().into_frames().len(), 4);
        assert_eq!(
            Message::with_topic(f("x"), f("y")).into_frames(),
            vec![f("x"), f("y")]
        );
        // Every shape, by each way of making it, round trip through `into_frames`.
        for n in 0..5 {
            let frames: Vec<Bytes> = (0..n).map(|i| Bytes::from("z".repeat(i))).collect();
            let mut pushed = Message::default();
            frames
                .iter()
                .for_each(|frame| pushed.push_frame(frame.clone()));
            let made = Message::new(frames.clone());
            assert_eq!(made.frames(), &frames[..]);
            assert_eq!(pushed.frames(), &frames[..]);
            assert_eq!(made.clone().into_frames(), frames);
            assert_eq!(made.is_empty(), n == 0);
        }
        assert_eq!(Message::single(f("s")).frames(), &[f("s")][..]);
    }

    #[test]
    fn a_message_is_two_frames_wide() {
        // 64 bytes on 64-bit targets: one cache line, no tag beside the pair.
        assert_eq!(
            std::mem::size_of::<Message>(),
            2 * std::mem::size_of::<Bytes>()
        );
    }

    #[test]
    fn small_messages_reuse_the_batch_buffer() {
        let (mut session, _) = ready_pair(SocketType::Pub, SocketType::Sub);
        let frames = [Bytes::from_static(b"topic"), Bytes::from(vec![7u8; 200])];
        let mut sink = Vec::new();
        session.write_to(&mut sink).unwrap();
        // Warm up: let the buffer reach its working size.
        for _ in 0..4 {
            session.send_message(&frames).unwrap();
        }
        session.write_to(&mut sink).unwrap();
        session.send_message(&frames).unwrap();
        // Writing advances the start and reclaiming moves it back, but the end of the
        // allocation only moves if the buffer is reallocated.
        let allocation_end = |s: &Session| s.out.batch.as_ptr() as usize + s.out.batch.capacity();
        let end = allocation_end(&session);
        let chunk_capacity = session.out.chunks.capacity();
        for _ in 0..1000 {
            sink.clear();
            session.write_to(&mut sink).unwrap();
            assert_eq!(sink.len(), 2 + 5 + 2 + 200);
            session.send_message(&frames).unwrap();
            assert_eq!(
                allocation_end(&session),
                end,
                "batch buffer was reallocated"
            );
        }
        assert_eq!(session.out.chunks.capacity(), chunk_capacity);
        assert!(session.out.chunks.is_empty());
    }

    #[test]
    fn large_bodies_are_queued_by_reference() {
        let (mut session, _) = ready_pair(SocketType::Pub, SocketType::Sub);
        session.write_to(&mut Vec::new()).unwrap();
        let big = Bytes::from(vec![1u8; INLINE_BODY_MAX + 1]);
        let at_limit = Bytes::from(vec![2u8; INLINE_BODY_MAX]);
        session
            .send_message(&[Bytes::from_static(b"t"), big.clone(), at_limit])
            .unwrap();
        // [header "t" + header big] [big] [header + at_limit inline]
        assert_eq!(session.out.chunks.len(), 2);
        let Some(Chunk::Data(queued)) = session.out.chunks.get(1) else {
            panic!("large body not queued as its own chunk")
        };
        assert_eq!(queued.as_ptr(), big.as_ptr(), "large body was copied");
        assert_eq!(session.out.batch.len(), 9 + INLINE_BODY_MAX);
    }

    #[test]
    fn borrowed_frames_put_the_same_bytes_on_the_wire_copied_into_the_batch() {
        let big = vec![1u8; INLINE_BODY_MAX + 1];
        let (mut shared, _) = ready_pair(SocketType::Pub, SocketType::Sub);
        let (mut borrowed, _) = ready_pair(SocketType::Pub, SocketType::Sub);
        let (mut want, mut got) = (Vec::new(), Vec::new());
        shared.write_to(&mut want).unwrap();
        borrowed.write_to(&mut got).unwrap();
        shared
            .send_message(&[Bytes::from_static(b"t"), Bytes::from(big.clone())])
            .unwrap();
        borrowed.send_message(&[&b"t"[..], &big[..]]).unwrap();
        // A borrowed body cannot be held by reference: even a large one is copied.
        assert!(
            borrowed.out.chunks.is_empty(),
            "borrowed body queued as a chunk"
        );
        assert_eq!(borrowed.out.batch.len(), 2 + 1 + 9 + big.len());
        shared.write_to(&mut want).unwrap();
        borrowed.write_to(&mut got).unwrap();
        assert_eq!(got, want);
        assert_eq!(
            borrowed.send_message::<&[u8]>(&[]),
            Err(SessionError::EmptyMessage)
        );
    }
}
