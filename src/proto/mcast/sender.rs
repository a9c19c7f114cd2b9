//! One publisher's session: sequencing, packing, fragmentation, heartbeats and the
//! retransmit buffer.

use super::ConfigError;
use crate::wire::mcast::{
    self, Data, DataHeader, Fragment, Frame, Heartbeat, DATA_FLAGS_OFFSET, DATA_HEADER_LEN,
    DATA_TRAIL_OFFSET, FLAG_RETRANSMIT, FRAGMENT_HEADER_LEN, HEARTBEAT_LEN, MAX_FRAME_LEN,
};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};
use zerocopy::FromBytes;

/// Default [`SenderConfig::max_datagram_size`]: 1400 bytes of UDP payload, which fits
/// a 1500-byte Ethernet MTU under IPv4 or IPv6 headers with room to spare.
pub const DEFAULT_MAX_DATAGRAM_SIZE: usize = 1400;
/// Smallest accepted [`SenderConfig::max_datagram_size`].
pub const MIN_DATAGRAM_SIZE: usize = 64;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM_SIZE: usize = 65_507;
/// Default [`SenderConfig::burst_datagrams`]: the I/O layer's `sendmmsg` batch.
pub const DEFAULT_BURST_DATAGRAMS: usize = 32;
/// Default [`SenderConfig::max_message_size`] (and the receiver's): 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default [`SenderConfig::retransmit_buffer`]: 4096 datagrams (about 5.6 MiB at the
/// default datagram size), tens of milliseconds of a busy LAN stream.
pub const DEFAULT_RETRANSMIT_BUFFER: usize = 4096;
/// Default [`SenderConfig::retransmit_holdoff`].
pub const DEFAULT_RETRANSMIT_HOLDOFF: Duration = Duration::from_micros(200);
/// Default [`SenderConfig::heartbeat_min`].
pub const DEFAULT_HEARTBEAT_MIN: Duration = Duration::from_millis(1);
/// Default [`SenderConfig::heartbeat_max`].
pub const DEFAULT_HEARTBEAT_MAX: Duration = Duration::from_millis(100);

/// How a [`Sender`] behaves. Every field has a documented default ([`Default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Application stream on the group (default 0): receivers only accept their stream,
    /// so several streams can share one group and port.
    pub stream_id: u32,
    /// Largest datagram written, header included (default 1400; at least 64, at most
    /// 65 507). This is the UDP payload size, not the link MTU.
    pub max_datagram_size: usize,
    /// Largest encoded message accepted by [`Sender::send_message`]: the frames plus 4
    /// bytes per frame (default 1 MiB, at most 2^31-1). Receivers need at least as much.
    pub max_message_size: usize,
    /// How long a partly filled datagram may wait for more messages before it is sent
    /// (default zero: it goes at the next [`Sender::poll_transmit`], so only messages
    /// handed over between two polls share a datagram). A positive linger packs more at
    /// moderate rates at the cost of up to that much latency.
    pub linger: Duration,
    /// How many full datagrams a burst gathers before they are written together (default
    /// 32; 1 writes each as soon as it is full). The linger bounds the wait: a datagram
    /// held is sent at the latest when the linger of the oldest one held runs out, or at
    /// once on [`Sender::flush`]. Written together, the I/O layer hands them to the
    /// kernel in one system call, and on Linux as one buffer the kernel cuts into
    /// datagrams (UDP GSO): most of a small datagram's cost is the kernel's per-send path,
    /// not its bytes.
    pub burst_datagrams: usize,
    /// Keep sent datagrams and answer NAKs (default false: best effort, receivers still
    /// count every loss exactly).
    pub reliable: bool,
    /// How many sent datagrams are kept for retransmission in reliable mode (default
    /// 4096). Receivers are told the oldest one kept; anything older is unrecoverable.
    pub retransmit_buffer: usize,
    /// A datagram retransmitted less than this long ago is not sent again for another
    /// NAK (default 200 µs): NAKs from several receivers that crossed on the wire cost
    /// one retransmission, not one each.
    pub retransmit_holdoff: Duration,
    /// First heartbeat after data stops (default 1 ms); the interval doubles after each
    /// heartbeat up to [`SenderConfig::heartbeat_max`]. This bounds how long a lost last
    /// datagram goes unnoticed (after a busy stream, plus the timer's backoff: up to
    /// [`HEARTBEAT_CHECK_MAX`] × this).
    pub heartbeat_min: Duration,
    /// Heartbeat interval of an idle publisher (default 100 ms).
    pub heartbeat_max: Duration,
}

impl Default for SenderConfig {
    fn default() -> SenderConfig {
        SenderConfig {
            stream_id: 0,
            max_datagram_size: DEFAULT_MAX_DATAGRAM_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            linger: Duration::ZERO,
            burst_datagrams: DEFAULT_BURST_DATAGRAMS,
            reliable: false,
            retransmit_buffer: DEFAULT_RETRANSMIT_BUFFER,
            retransmit_holdoff: DEFAULT_RETRANSMIT_HOLDOFF,
            heartbeat_min: DEFAULT_HEARTBEAT_MIN,
            heartbeat_max: DEFAULT_HEARTBEAT_MAX,
        }
    }
}

impl SenderConfig {
    /// Checks the limits documented on each field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_DATAGRAM_SIZE..=MAX_DATAGRAM_SIZE).contains(&self.max_datagram_size) {
            return Err(ConfigError(format!(
                "max_datagram_size {} outside {MIN_DATAGRAM_SIZE}..={MAX_DATAGRAM_SIZE}",
                self.max_datagram_size
            )));
        }
        if self.max_message_size == 0 || self.max_message_size > MAX_FRAME_LEN {
            return Err(ConfigError(format!(
                "max_message_size {} outside 1..={MAX_FRAME_LEN}",
                self.max_message_size
            )));
        }
        if self.burst_datagrams == 0 {
            return Err(ConfigError("burst_datagrams must be at least 1".into()));
        }
        if self.reliable && self.retransmit_buffer == 0 {
            return Err(ConfigError(
                "reliable mode needs a retransmit_buffer".into(),
            ));
        }
        if self.heartbeat_min.is_zero() || self.heartbeat_max < self.heartbeat_min {
            return Err(ConfigError(
                "heartbeat_min must be positive and at most heartbeat_max".into(),
            ));
        }
        Ok(())
    }
}

/// Why [`Sender::send_message`] refused a message (nothing was queued).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// A message needs at least one frame.
    Empty,
    /// The encoded message exceeds [`SenderConfig::max_message_size`].
    TooLarge {
        /// Encoded size (frames plus 4 bytes each).
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Empty => f.write_str("a message needs at least one frame"),
            SendError::TooLarge { size, max } => {
                write!(
                    f,
                    "encoded message of {size} bytes exceeds the limit of {max}"
                )
            }
        }
    }
}

impl std::error::Error for SendError {}

/// Counters of a [`Sender`] (a snapshot from [`Sender::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Messages accepted by [`Sender::send_message`].
    pub messages: u64,
    /// Their frame bytes (without length words).
    pub message_bytes: u64,
    /// Of those, messages too large for one datagram (sent as fragments).
    pub fragmented_messages: u64,
    /// New DATA datagrams written by [`Sender::poll_transmit`].
    pub datagrams: u64,
    /// Retransmitted DATA datagrams.
    pub retransmits: u64,
    /// HEARTBEATs written.
    pub heartbeats: u64,
    /// NAKs for this session received.
    pub naks_received: u64,
    /// Datagrams those NAKs asked for that were older than the retransmit buffer.
    pub unrecoverable_requests: u64,
    /// Datagrams not resent because they were resent less than the holdoff ago.
    pub held_off_requests: u64,
    /// Datagrams received that are not valid protocol frames.
    pub garbage_datagrams: u64,
    /// Valid frames that are not NAKs for this session (other publishers' traffic).
    pub ignored_datagrams: u64,
    /// Sequence number the next new DATA datagram will carry.
    pub next_seq: u64,
    /// Message number the next message will carry.
    pub next_msg: u64,
    /// Oldest datagram still retransmittable (`next_seq` when none is).
    pub trail_seq: u64,
}

/// The datagram being filled with packed messages.
struct Open {
    buf: Vec<u8>,
    first_msg: u64,
    count: u16,
    /// When the linger runs out: computed once when the datagram opens, so that the
    /// checks made on every send compare two instants instead of subtracting them.
    close_at: Instant,
}

/// A transmitted datagram kept for retransmission.
struct Stored {
    bytes: Vec<u8>,
    /// When it was last retransmitted (the holdoff applies to repairs only: a NAK
    /// arriving right after the original transmission is a genuine loss).
    last_retransmit: Option<Instant>,
    queued: bool,
}

/// One publisher's sans-IO session on a multicast group. See the [module
/// docs](super) for how the I/O layer drives it.
pub struct Sender {
    config: SenderConfig,
    session_id: u32,
    /// Sequence number for the next datagram closed (queued or fragmented).
    next_seq: u64,
    /// Message number for the next message accepted.
    next_msg: u64,
    open: Option<Open>,
    /// Closed datagrams waiting for their first transmission; `ready[0]` has sequence
    /// number `next_seq - ready.len()`.
    ready: VecDeque<Vec<u8>>,
    /// Until when `ready` may wait for more full datagrams (the linger of the oldest in
    /// it); `None` once it is due (flushed, fragments, or released).
    ready_hold_until: Option<Instant>,
    /// Transmitted datagrams (reliable mode); `history[0]` has sequence number
    /// `history_start`.
    history: VecDeque<Stored>,
    history_start: u64,
    retransmit_queue: VecDeque<u64>,
    /// Emptied datagram buffers for reuse, so the steady state does not allocate.
    pool: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    heartbeat_due: Instant,
    heartbeat_interval: Duration,
    heartbeat_now: bool,
    /// When the timer looks whether the heartbeat is due: what [`Sender::poll_timeout`]
    /// reports for it. Each data datagram moves the heartbeat a `heartbeat_min` on; were
    /// the timer to follow, steady traffic would wake it every `heartbeat_min` only to
    /// find the heartbeat postponed again (loopback ping-pong: some 2,000 I/O-thread
    /// wake-ups a second, each taking a core from a busy-polling thread). So data leaves
    /// the check where it is, and a check that finds the heartbeat postponed looks again
    /// after `heartbeat_check_backoff` (or when the heartbeat is due, if later), which
    /// doubles per such check up to [`HEARTBEAT_CHECK_MAX`] × `heartbeat_min`.
    heartbeat_check_at: Instant,
    heartbeat_check_backoff: Duration,
    stats: SenderStats,
}

/// The heartbeat checks of a busy stream back off to this many `heartbeat_min`s: the most
/// a heartbeat after the last data can be late by, on top of its own interval.
pub const HEARTBEAT_CHECK_MAX: u32 = 16;

impl Sender {
    /// A session with id `session_id` (pick it with [`super::random_session_id`] so a
    /// restarted publisher is told apart from its previous run). Its first heartbeat is
    /// due at `now`, announcing the session to receivers before any data.
    pub fn new(config: SenderConfig, session_id: u32, now: Instant) -> Result<Sender, ConfigError> {
        config.validate()?;
        let heartbeat_interval = config.heartbeat_min;
        Ok(Sender {
            config,
            session_id,
            next_seq: 0,
            next_msg: 0,
            open: None,
            ready: VecDeque::new(),
            ready_hold_until: None,
            history: VecDeque::new(),
            history_start: 0,
            retransmit_queue: VecDeque::new(),
            pool: Vec::new(),
            scratch: Vec::new(),
            heartbeat_due: now,
            heartbeat_interval,
            heartbeat_now: false,
            heartbeat_check_at: now,
            heartbeat_check_backoff: heartbeat_interval,
            stats: SenderStats::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    /// This session's id.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// Queues a message made of `parts` (its frames; `&[Bytes]`, `&[&[u8]]`, ...).
    /// Small messages are packed with others into the open datagram; a message larger
    /// than one datagram is split into fragments. Nothing is written until
    /// [`Sender::poll_transmit`].
    pub fn send_message<B: AsRef<[u8]>>(
        &mut self,
        parts: &[B],
        now: Instant,
    ) -> Result<(), SendError> {
        self.queue(parts, Some(now)).map(|_| ())
    }

    /// Queues a message made of `parts` only if it fits the open datagram (a burst is
    /// being packed), which needs no clock; returns false, queueing nothing, otherwise.
    /// Errors as [`Sender::send_message`].
    pub fn append_to_open<B: AsRef<[u8]>>(&mut self, parts: &[B]) -> Result<bool, SendError> {
        self.queue(parts, None)
    }

    /// Whether a datagram is open: messages sent now are packed into it, and the linger
    /// (or a full datagram) sends it.
    pub fn has_open(&self) -> bool {
        self.open.is_some()
    }

    /// Queues the message, or (without `now`) only appends it to the open datagram;
    /// returns whether it was queued.
    fn queue<B: AsRef<[u8]>>(
        &mut self,
        parts: &[B],
        now: Option<Instant>,
    ) -> Result<bool, SendError> {
        if parts.is_empty() {
            return Err(SendError::Empty);
        }
        let size = mcast::encoded_message_len(parts);
        if size > self.config.max_message_size {
            return Err(SendError::TooLarge {
                size,
                max: self.config.max_message_size,
            });
        }
        let packed = DATA_HEADER_LEN + size <= self.config.max_datagram_size;
        let fits_open = packed && self.fits_open(size);
        match now {
            _ if fits_open => {}
            None => return Ok(false),
            Some(now) if packed => self.open_datagram(now),
            Some(_) => {
                self.count_message(size, parts.len());
                self.fragment(parts);
                return Ok(true);
            }
        }
        self.count_message(size, parts.len());
        let open = self.open.as_mut().expect("open, or opened above");
        mcast::encode_message(parts, &mut open.buf);
        open.count += 1;
        self.next_msg += 1;
        Ok(true)
    }

    fn count_message(&mut self, encoded_size: usize, frames: usize) {
        self.stats.messages += 1;
        self.stats.message_bytes += (encoded_size - frames * mcast::FRAME_HEADER_LEN) as u64;
    }

    fn fits_open(&self, size: usize) -> bool {
        self.open.as_ref().is_some_and(|open| {
            open.buf.len() + size <= self.config.max_datagram_size && open.count < u16::MAX
        })
    }

    /// Closes the open datagram (if any) and opens a new one, lingering from `now`.
    fn open_datagram(&mut self, now: Instant) {
        self.close_open();
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.reserve(self.config.max_datagram_size);
        buf.resize(DATA_HEADER_LEN, 0);
        self.open = Some(Open {
            buf,
            first_msg: self.next_msg,
            count: 0,
            close_at: after(now, self.config.linger),
        });
    }

    fn fragment<B: AsRef<[u8]>>(&mut self, parts: &[B]) {
        self.close_open();
        self.stats.fragmented_messages += 1;
        let mut encoded = std::mem::take(&mut self.scratch);
        encoded.clear();
        mcast::encode_message(parts, &mut encoded);
        let chunk = self.config.max_datagram_size - DATA_HEADER_LEN - FRAGMENT_HEADER_LEN;
        let total_len = encoded.len() as u32;
        let mut offset = 0usize;
        while offset < encoded.len() {
            let end = (offset + chunk).min(encoded.len());
            let header = Data {
                session_id: self.session_id,
                stream_id: self.config.stream_id,
                seq: self.next_seq,
                msg_seq: self.next_msg,
                trail_seq: 0,
                count: 1,
                begin: offset == 0,
                end: end == encoded.len(),
                retransmit: false,
                reliable: self.config.reliable,
                fragment: Some(Fragment {
                    total_len,
                    offset: offset as u32,
                }),
            };
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.resize(DATA_HEADER_LEN + FRAGMENT_HEADER_LEN, 0);
            header.encode_header(&mut buf);
            buf.extend_from_slice(&encoded[offset..end]);
            self.ready.push_back(buf);
            self.next_seq += 1;
            offset = end;
        }
        self.next_msg += 1;
        self.scratch = encoded;
        // A fragmented message's datagrams are all there is of it: nothing to wait for.
        self.ready_hold_until = None;
    }

    /// Closes the open datagram (if any) so the next [`Sender::poll_transmit`] sends it
    /// whatever the linger.
    pub fn flush(&mut self) {
        self.close_open();
        self.ready_hold_until = None;
    }

    /// Sends a heartbeat with the next poll (once anything has been sent), so receivers
    /// learn the stream's lead now: a receiver that lost the last datagram cannot tell
    /// until a heartbeat or a later datagram says it exists, and a publisher about to go
    /// (or go quiet) may not send either before it does.
    pub fn announce(&mut self) {
        if self.stats.datagrams > 0 {
            self.heartbeat_now = true;
        }
    }

    fn close_open(&mut self) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        let header = Data {
            session_id: self.session_id,
            stream_id: self.config.stream_id,
            seq: self.next_seq,
            msg_seq: open.first_msg,
            trail_seq: 0,
            count: open.count,
            begin: true,
            end: true,
            retransmit: false,
            reliable: self.config.reliable,
            fragment: None,
        };
        header.encode_header(&mut open.buf);
        if self.ready.is_empty() {
            self.ready_hold_until = Some(open.close_at);
        }
        self.ready.push_back(open.buf);
        self.next_seq += 1;
    }

    /// Whether the datagrams in `ready` are to be sent now: they were flushed, their
    /// wait is over, or a whole burst's worth is gathered.
    fn ready_due(&self, now: Instant) -> bool {
        !self.ready.is_empty()
            && self
                .ready_hold_until
                .is_none_or(|until| now >= until || self.ready.len() >= self.config.burst_datagrams)
    }

    /// Sequence number of the next datagram to go out for the first time.
    fn transmit_lead(&self) -> u64 {
        self.next_seq - self.ready.len() as u64
    }

    /// The first message of that datagram: what a heartbeat announces as the lead, so
    /// that a receiver caught up to it counts nothing not yet sent as lost. Datagrams
    /// held in `ready` (a burst being gathered) come before the open one.
    fn transmit_lead_msg(&self) -> u64 {
        if let Some(datagram) = self.ready.front() {
            let (header, _) = DataHeader::ref_from_prefix(datagram)
                .expect("ready holds DATA datagrams this sender encoded");
            return header.msg_seq.get();
        }
        self.open
            .as_ref()
            .map_or(self.next_msg, |open| open.first_msg)
    }

    fn trail(&self) -> u64 {
        if self.history.is_empty() {
            self.transmit_lead()
        } else {
            self.history_start
        }
    }

    /// Handles a datagram read from the group: NAKs for this session queue
    /// retransmissions (reliable mode); everything else is counted and ignored.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let nak = match mcast::decode(datagram) {
            Ok(Frame::Nak(nak))
                if nak.session_id == self.session_id && nak.stream_id == self.config.stream_id =>
            {
                nak
            }
            Ok(_) => {
                self.stats.ignored_datagrams += 1;
                return;
            }
            Err(_) => {
                self.stats.garbage_datagrams += 1;
                return;
            }
        };
        self.stats.naks_received += 1;
        let lead = self.transmit_lead();
        let trail = self.trail();
        let start = nak.start_seq.min(lead);
        let end = nak.end_seq().min(lead);
        let retransmittable = if self.config.reliable { trail } else { lead };
        let unrecoverable = end.min(retransmittable).saturating_sub(start);
        if unrecoverable > 0 {
            self.stats.unrecoverable_requests += unrecoverable;
            // Tell receivers the window edge now rather than at the next heartbeat.
            self.heartbeat_now = true;
        }
        for seq in start.max(retransmittable)..end {
            let Some(stored) = self.history.get_mut((seq - self.history_start) as usize) else {
                break;
            };
            if stored.queued {
                continue;
            }
            let recent = stored.last_retransmit.is_some_and(|at| {
                now.saturating_duration_since(at) < self.config.retransmit_holdoff
            });
            if recent {
                self.stats.held_off_requests += 1;
                continue;
            }
            stored.queued = true;
            self.retransmit_queue.push_back(seq);
        }
    }

    /// Writes the next datagram due at `now` to the front of `buf` and returns its
    /// length, or `None` when nothing is due. Send it to the group; call again until
    /// `None`. Retransmissions go first, then new data, then a heartbeat.
    ///
    /// # Panics
    /// If `buf` is shorter than [`SenderConfig::max_datagram_size`].
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        assert!(
            buf.len() >= self.config.max_datagram_size,
            "poll_transmit needs a buffer of max_datagram_size bytes"
        );
        while let Some(seq) = self.retransmit_queue.pop_front() {
            if seq < self.history_start {
                continue; // evicted since it was asked for
            }
            let trail = self.history_start;
            let Some(stored) = self.history.get_mut((seq - self.history_start) as usize) else {
                continue;
            };
            stored.queued = false;
            stored.last_retransmit = Some(now);
            let len = stored.bytes.len();
            buf[..len].copy_from_slice(&stored.bytes);
            buf[DATA_FLAGS_OFFSET] |= FLAG_RETRANSMIT;
            buf[DATA_TRAIL_OFFSET..DATA_TRAIL_OFFSET + 8].copy_from_slice(&trail.to_le_bytes());
            self.stats.retransmits += 1;
            return Some(len);
        }
        if self.ready.is_empty() {
            let lingered = self.open.as_ref().is_some_and(|open| now >= open.close_at);
            if lingered {
                self.close_open();
            }
        }
        if self.ready_due(now) {
            // Once due, all of it goes: it is one burst, written together.
            self.ready_hold_until = None;
            let datagram = self.ready.pop_front().expect("due means not empty");
            return Some(self.transmit_new(now, datagram, buf));
        }
        if self.heartbeat_now || now >= self.heartbeat_due {
            self.heartbeat_now = false;
            let heartbeat = Heartbeat {
                session_id: self.session_id,
                stream_id: self.config.stream_id,
                lead_seq: self.transmit_lead(),
                lead_msg: self.transmit_lead_msg(),
                trail_seq: self.trail(),
                reliable: self.config.reliable,
            };
            self.stats.heartbeats += 1;
            self.heartbeat_check_backoff = self.config.heartbeat_min;
            self.heartbeat_due = now + self.heartbeat_interval;
            self.heartbeat_check_at = self.heartbeat_due;
            self.heartbeat_interval = (self.heartbeat_interval * 2).min(self.config.heartbeat_max);
            return Some(heartbeat.encode(&mut buf[..HEARTBEAT_LEN]));
        }
        None
    }

    fn transmit_new(&mut self, now: Instant, mut datagram: Vec<u8>, buf: &mut [u8]) -> usize {
        let seq = self.transmit_lead() - 1;
        let trail = if self.config.reliable {
            if self.history.len() >= self.config.retransmit_buffer {
                if let Some(evicted) = self.history.pop_front() {
                    self.history_start += 1;
                    self.pool.push(evicted.bytes);
                }
            }
            if self.history.is_empty() {
                self.history_start = seq;
            }
            self.history_start
        } else {
            // Nothing is retransmittable: the trail is past this datagram.
            seq + 1
        };
        datagram[DATA_TRAIL_OFFSET..DATA_TRAIL_OFFSET + 8].copy_from_slice(&trail.to_le_bytes());
        let len = datagram.len();
        buf[..len].copy_from_slice(&datagram);
        if self.config.reliable {
            self.history.push_back(Stored {
                bytes: datagram,
                last_retransmit: None,
                queued: false,
            });
        } else {
            self.pool.push(datagram);
        }
        self.stats.datagrams += 1;
        self.heartbeat_interval = self.config.heartbeat_min;
        self.heartbeat_due = now + self.heartbeat_interval;
        len
    }

    /// Whether [`Sender::poll_transmit`] at `now` would write anything. A caller that
    /// queues messages one by one asks this first, which is much cheaper than a poll
    /// while a datagram is still being filled.
    pub fn transmit_due(&self, now: Instant) -> bool {
        !self.retransmit_queue.is_empty()
            || self.ready_due(now)
            || self.heartbeat_now
            || now >= self.heartbeat_due
            || self.open.as_ref().is_some_and(|open| now >= open.close_at)
    }

    /// The next instant something becomes due without new input (a lingering datagram
    /// or a heartbeat). Datagrams already due are reported by
    /// [`Sender::poll_transmit`], which the caller runs after every input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let linger = self.open.as_ref().map(|open| open.close_at);
        let held = self.ready_hold_until.filter(|_| !self.ready.is_empty());
        Some(
            [linger, held]
                .into_iter()
                .flatten()
                .fold(self.heartbeat_check_at, Instant::min),
        )
    }

    /// Advances timers to `now`; follow with [`Sender::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let lingered = self.open.as_ref().is_some_and(|open| now >= open.close_at);
        if lingered {
            self.close_open();
        } else if now < self.heartbeat_due && now >= self.heartbeat_check_at {
            // Woken for a heartbeat that data has postponed since: the stream is busy.
            self.heartbeat_check_at = self.heartbeat_due.max(now + self.heartbeat_check_backoff);
            let max = self.config.heartbeat_min * HEARTBEAT_CHECK_MAX;
            self.heartbeat_check_backoff = (self.heartbeat_check_backoff * 2)
                .min(max)
                .min(self.config.heartbeat_max);
        }
    }

    /// A snapshot of the counters and window edges.
    pub fn stats(&self) -> SenderStats {
        SenderStats {
            next_seq: self.next_seq,
            next_msg: self.next_msg,
            trail_seq: self.trail(),
            ..self.stats.clone()
        }
    }
}

/// `now + d`, or as late as an `Instant` goes when that overflows (a linger so long it
/// never runs out).
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}
