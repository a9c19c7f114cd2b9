//! The receiving side: one session per publisher heard on the group, in-order delivery,
//! reassembly, exact loss accounting and (reliable mode) NAK-based repair.
//!
//! # Implementation notes
//!
//! Each publisher's session keeps a window of slots indexed by datagram sequence number
//! from `next_seq` (the oldest datagram not yet consumed). A slot is `Present` (arrived,
//! waiting for the ones before it), `Missing` (with the instant at which it is NAKed
//! or, in best-effort mode, given up) or `Lost` (given up). Consuming the front of the
//! window in order is the only place messages are delivered and losses are counted, so
//! delivery is ordered per publisher in both modes.
//!
//! Losses are counted in datagrams when they are given up, and in messages lazily: the
//! next datagram consumed (or the publisher's heartbeat once the receiver has caught up
//! with it) carries the number of the message it starts with, and every message number
//! between the last one delivered and that one is lost. A message whose fragments were
//! partly lost is lost once. So, per publisher, `delivered + lost == next_msg -
//! joined_at_msg` holds at every step (a message being reassembled is counted when it
//! completes or breaks), and equals the number of messages the publisher sent after
//! the receiver joined once the receiver has caught up with the publisher's last
//! heartbeat.

use super::{ConfigError, Message, PublisherId, Rng};
use crate::wire::mcast::{
    self, Data, Frame, Heartbeat, MessageFrames, Nak, PackedMessages, NAK_LEN,
};
use bytes::{Bytes, BytesMut};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Default [`ReceiverConfig::receive_window`] (the sender's default retransmit buffer).
pub const DEFAULT_RECEIVE_WINDOW: usize = 4096;
/// Largest accepted [`ReceiverConfig::receive_window`].
pub const MAX_RECEIVE_WINDOW: usize = 1 << 20;
/// Default [`ReceiverConfig::nak_delay_max`].
pub const DEFAULT_NAK_DELAY_MAX: Duration = Duration::from_micros(500);
/// Default [`ReceiverConfig::nak_retry`].
pub const DEFAULT_NAK_RETRY: Duration = Duration::from_millis(2);
/// Default [`ReceiverConfig::nak_max_attempts`].
pub const DEFAULT_NAK_MAX_ATTEMPTS: u32 = 50;
/// Default [`ReceiverConfig::publisher_timeout`].
pub const DEFAULT_PUBLISHER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ReceiverConfig::max_publishers`].
pub const DEFAULT_MAX_PUBLISHERS: usize = 256;
/// How many recently given-up ranges each session remembers to tell a late datagram
/// from a duplicate.
const REMEMBERED_LOSSES: usize = 32;

/// How a [`Receiver`] behaves. Every field has a documented default ([`Default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Stream to accept (default 0); other streams on the group are counted and ignored.
    pub stream_id: u32,
    /// NAK missing datagrams of publishers that advertise a retransmit buffer, and wait
    /// for repair before delivering later messages (default false: best effort, gaps
    /// are skipped and counted).
    pub reliable: bool,
    /// Largest encoded message reassembled (default 1 MiB, as the sender's); a larger
    /// one is counted lost without buffering it.
    pub max_message_size: usize,
    /// Datagrams held per publisher beyond a gap (default 4096, at most 2^20). A datagram
    /// further ahead forces the oldest gaps to be given up.
    pub receive_window: usize,
    /// Shortest delay before the first NAK of a gap (default zero).
    pub nak_delay_min: Duration,
    /// Longest delay before the first NAK of a gap (default 500 µs). The delay is drawn
    /// uniformly between the two, so that on a LAN one receiver's NAK usually reaches
    /// the others before they send theirs (suppression). Aeron's 10 ms turns every loss
    /// into a 10–20 ms tail; half a millisecond is several LAN round trips.
    pub nak_delay_max: Duration,
    /// Wait after a NAK (ours or another receiver's for the same datagrams) before
    /// NAKing again, plus a random part up to [`ReceiverConfig::nak_delay_max`] (default
    /// 2 ms: a LAN round trip and the sender's holdoff, with margin).
    pub nak_retry: Duration,
    /// NAKs sent for one datagram before it is declared lost (default 50). Normally the
    /// publisher's trail (its oldest retransmittable datagram) declares data
    /// unrecoverable first; this ends the wait when the publisher is gone.
    pub nak_max_attempts: u32,
    /// Best-effort mode: how long a gap may wait for reordered datagrams before it is
    /// counted lost (default zero: as soon as a later datagram arrives).
    pub reorder_timeout: Duration,
    /// A publisher not heard from for this long is retired (default 10 s): its
    /// remaining gaps are counted lost and its counters move to
    /// [`ReceiverStats::retired`].
    pub publisher_timeout: Duration,
    /// Publishers tracked at once (default 256); datagrams from more are counted and
    /// dropped.
    pub max_publishers: usize,
    /// Seed for the NAK jitter and this receiver's id (default `None`: random). Tests set
    /// it for reproducible runs.
    pub seed: Option<u64>,
}

impl Default for ReceiverConfig {
    fn default() -> ReceiverConfig {
        ReceiverConfig {
            stream_id: 0,
            reliable: false,
            max_message_size: super::sender::DEFAULT_MAX_MESSAGE_SIZE,
            receive_window: DEFAULT_RECEIVE_WINDOW,
            nak_delay_min: Duration::ZERO,
            nak_delay_max: DEFAULT_NAK_DELAY_MAX,
            nak_retry: DEFAULT_NAK_RETRY,
            nak_max_attempts: DEFAULT_NAK_MAX_ATTEMPTS,
            reorder_timeout: Duration::ZERO,
            publisher_timeout: DEFAULT_PUBLISHER_TIMEOUT,
            max_publishers: DEFAULT_MAX_PUBLISHERS,
            seed: None,
        }
    }
}

impl ReceiverConfig {
    /// Checks the limits documented on each field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_RECEIVE_WINDOW).contains(&self.receive_window) {
            return Err(ConfigError(format!(
                "receive_window {} outside 1..={MAX_RECEIVE_WINDOW}",
                self.receive_window
            )));
        }
        if self.max_message_size < mcast::FRAME_HEADER_LEN {
            return Err(ConfigError(
                "max_message_size below one frame header".into(),
            ));
        }
        if self.nak_delay_max < self.nak_delay_min {
            return Err(ConfigError("nak_delay_max below nak_delay_min".into()));
        }
        if self.nak_retry.is_zero() || self.nak_max_attempts == 0 {
            return Err(ConfigError(
                "nak_retry and nak_max_attempts must be positive".into(),
            ));
        }
        if self.max_publishers == 0 || self.publisher_timeout.is_zero() {
            return Err(ConfigError(
                "max_publishers and publisher_timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Counters of one publisher's session at a receiver.
///
/// Message counts are exact: `delivered_messages + lost_messages == next_msg -
/// joined_at_msg`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Messages handed to [`Receiver::poll_message`].
    pub delivered_messages: u64,
    /// Their frame bytes.
    pub delivered_bytes: u64,
    /// Messages that will never be delivered (all causes below included).
    pub lost_messages: u64,
    /// Of those, messages larger than [`ReceiverConfig::max_message_size`].
    pub oversize_messages: u64,
    /// Of those, reassembled messages whose frames did not parse.
    pub malformed_messages: u64,
    /// Datagrams given up (all causes).
    pub lost_datagrams: u64,
    /// Of those, datagrams older than the publisher's trail when still missing
    /// (reliable mode): unrecoverable, never waited for.
    pub unrecoverable_datagrams: u64,
    /// Of those, datagrams NAKed [`ReceiverConfig::nak_max_attempts`] times in vain.
    pub nak_exhausted_datagrams: u64,
    /// Of those, datagrams pushed out of the receive window by newer ones.
    pub overrun_datagrams: u64,
    /// Datagrams received twice (the copy was dropped).
    pub duplicate_datagrams: u64,
    /// Datagrams that arrived after they had been given up (dropped; already counted).
    pub late_datagrams: u64,
    /// Datagrams older than the position this receiver joined at (dropped).
    pub before_join_datagrams: u64,
    /// Retransmitted datagrams received (useful or not).
    pub retransmits_received: u64,
    /// NAKs this receiver sent for the publisher.
    pub naks_sent: u64,
    /// Times another receiver's NAK made this one hold its own back.
    pub naks_suppressed: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Datagram sequence number this receiver started at (late join: nothing before it
    /// is data or loss).
    pub joined_at_seq: u64,
    /// Message number this receiver started at.
    pub joined_at_msg: u64,
    /// Next datagram to consume.
    pub next_seq: u64,
    /// Next message number to deliver or count.
    pub next_msg: u64,
    /// Datagrams held beyond a gap.
    pub pending_datagrams: u64,
}

impl PublisherStats {
    fn add(&mut self, other: &PublisherStats) {
        self.delivered_messages += other.delivered_messages;
        self.delivered_bytes += other.delivered_bytes;
        self.lost_messages = self.lost_messages.saturating_add(other.lost_messages);
        self.oversize_messages += other.oversize_messages;
        self.malformed_messages += other.malformed_messages;
        self.lost_datagrams = self.lost_datagrams.saturating_add(other.lost_datagrams);
        self.unrecoverable_datagrams = self
            .unrecoverable_datagrams
            .saturating_add(other.unrecoverable_datagrams);
        self.nak_exhausted_datagrams += other.nak_exhausted_datagrams;
        self.overrun_datagrams = self
            .overrun_datagrams
            .saturating_add(other.overrun_datagrams);
        self.duplicate_datagrams += other.duplicate_datagrams;
        self.late_datagrams += other.late_datagrams;
        self.before_join_datagrams += other.before_join_datagrams;
        self.retransmits_received += other.retransmits_received;
        self.naks_sent += other.naks_sent;
        self.naks_suppressed += other.naks_suppressed;
        self.heartbeats += other.heartbeats;
        self.pending_datagrams += other.pending_datagrams;
    }
}

/// Counters of a [`Receiver`] (a snapshot from [`Receiver::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Publishers currently tracked, by id.
    pub publishers: Vec<(PublisherId, PublisherStats)>,
    /// Publishers retired after [`ReceiverConfig::publisher_timeout`] (newest last; at
    /// most [`ReceiverConfig::max_publishers`] are kept).
    pub retired: Vec<(PublisherId, PublisherStats)>,
    /// Datagrams that are not valid frames of the protocol (counted, ignored).
    pub garbage_datagrams: u64,
    /// Valid frames of another stream.
    pub other_stream_datagrams: u64,
    /// Datagrams from publishers beyond [`ReceiverConfig::max_publishers`].
    pub rejected_datagrams: u64,
    /// Retransmissions from publishers this receiver had not joined (not a join point).
    pub ignored_datagrams: u64,
    /// NAKs from other receivers seen on the group.
    pub naks_seen: u64,
}

impl ReceiverStats {
    /// The per-publisher counters summed over live and retired publishers (position
    /// fields are left zero).
    pub fn total(&self) -> PublisherStats {
        let mut total = PublisherStats::default();
        for (_, stats) in self.publishers.iter().chain(&self.retired) {
            total.add(stats);
        }
        total
    }

    /// The counters of the live publisher `id`.
    pub fn publisher(&self, id: &PublisherId) -> Option<&PublisherStats> {
        self.publishers
            .iter()
            .find(|(pid, _)| pid == id)
            .map(|(_, stats)| stats)
    }
}

/// A datagram that arrived and waits for its turn.
struct Received {
    data: Data,
    payload: Bytes,
}

enum Slot {
    Present(Received),
    Missing { deadline: Instant, attempts: u32 },
    Lost,
}

/// A message being reassembled from fragments; its number is the session's `next_msg`.
struct Partial {
    total_len: u32,
    buf: BytesMut,
}

#[derive(Clone, Copy)]
enum GiveUp {
    Unrecoverable,
    Overrun,
    Retired,
}

/// What a session needs from its receiver while it works.
struct Ctx<'a> {
    config: &'a ReceiverConfig,
    rng: &'a mut Rng,
    messages: &'a mut VecDeque<(PublisherId, Message)>,
    naks: &'a mut VecDeque<Nak>,
    receiver_id: u32,
    now: Instant,
}

impl Ctx<'_> {
    fn jitter(&mut self) -> Duration {
        let min = self.config.nak_delay_min.as_nanos() as u64;
        let max = self.config.nak_delay_max.as_nanos() as u64;
        Duration::from_nanos(min + self.rng.up_to(max - min))
    }
}

struct Session {
    id: PublisherId,
    publisher_reliable: bool,
    next_seq: u64,
    next_msg: u64,
    /// `window[i]` is datagram `next_seq + i`.
    window: VecDeque<Slot>,
    partial: Option<Partial>,
    /// The publisher's latest heartbeat position `(lead_seq, lead_msg)`.
    lead: Option<(u64, u64)>,
    last_heard: Instant,
    /// Earliest `Missing` deadline (may be stale-early, never late).
    deadline: Option<Instant>,
    /// Recently given-up `[start, end)` ranges.
    given_up: VecDeque<(u64, u64)>,
    stats: PublisherStats,
}

impl Session {
    fn new(id: PublisherId, seq: u64, msg: u64, now: Instant) -> Session {
        Session {
            id,
            publisher_reliable: false,
            next_seq: seq,
            next_msg: msg,
            window: VecDeque::new(),
            partial: None,
            lead: None,
            last_heard: now,
            deadline: None,
            given_up: VecDeque::new(),
            stats: PublisherStats {
                joined_at_seq: seq,
                joined_at_msg: msg,
                ..PublisherStats::default()
            },
        }
    }

    fn reliable(&self, config: &ReceiverConfig) -> bool {
        config.reliable && self.publisher_reliable
    }

    fn snapshot(&self) -> PublisherStats {
        PublisherStats {
            next_seq: self.next_seq,
            next_msg: self.next_msg,
            pending_datagrams: self.window.len() as u64,
            ..self.stats.clone()
        }
    }

    /// One past the last datagram the window covers.
    fn window_end(&self) -> u64 {
        self.next_seq.saturating_add(self.window.len() as u64)
    }

    fn lose_messages(&mut self, n: u64) {
        self.stats.lost_messages = self.stats.lost_messages.saturating_add(n);
    }

    fn remember_given_up(&mut self, start: u64, end: u64) {
        if let Some(last) = self.given_up.back_mut() {
            if last.1 == start {
                last.1 = end;
                return;
            }
        }
        if self.given_up.len() == REMEMBERED_LOSSES {
            self.given_up.pop_front();
        }
        self.given_up.push_back((start, end));
    }

    fn was_given_up(&self, seq: u64) -> bool {
        self.given_up
            .iter()
            .any(|&(start, end)| (start..end).contains(&seq))
    }

    fn new_missing(&self, ctx: &mut Ctx<'_>) -> Slot {
        let delay = if self.reliable(ctx.config) {
            ctx.jitter()
        } else {
            ctx.config.reorder_timeout
        };
        Slot::Missing {
            deadline: ctx.now + delay,
            attempts: 0,
        }
    }

    /// Makes `seq` (≥ `next_seq`) a slot of the window, giving up the oldest datagrams
    /// if it is too far ahead; returns its index. Slots created before it are missing
    /// (timers armed); `seq`'s own slot is armed only if `arriving` is false (otherwise
    /// the caller fills it at once, and a timer would only cause a spurious wake-up).
    fn slot_for(&mut self, seq: u64, arriving: bool, ctx: &mut Ctx<'_>) -> usize {
        let capacity = ctx.config.receive_window as u64;
        if seq - self.next_seq >= capacity {
            self.give_up_until(seq - capacity + 1, GiveUp::Overrun, ctx);
        }
        let index = (seq - self.next_seq) as usize;
        while self.window.len() <= index {
            if arriving && self.window.len() == index {
                self.window.push_back(Slot::Missing {
                    deadline: ctx.now,
                    attempts: 0,
                });
                break;
            }
            let slot = self.new_missing(ctx);
            if let Slot::Missing { deadline, .. } = slot {
                self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
            }
            self.window.push_back(slot);
        }
        index
    }

    /// Gives up every datagram before `target` that has not arrived, consuming those that
    /// have.
    fn give_up_until(&mut self, target: u64, why: GiveUp, ctx: &mut Ctx<'_>) {
        if target <= self.next_seq {
            return;
        }
        let upto = (target - self.next_seq).min(self.window.len() as u64) as usize;
        let mut given_up = 0u64;
        for slot in self.window.iter_mut().take(upto) {
            if let Slot::Missing { .. } = slot {
                *slot = Slot::Lost;
                given_up += 1;
            }
        }
        self.count_give_up(why, given_up);
        self.advance(ctx);
        if self.next_seq < target {
            // The window is empty: everything up to `target` never arrived.
            debug_assert!(self.window.is_empty());
            let skipped = target - self.next_seq;
            self.count_give_up(why, skipped);
            self.stats.lost_datagrams = self.stats.lost_datagrams.saturating_add(skipped);
            self.remember_given_up(self.next_seq, target);
            self.partial = None;
            self.next_seq = target;
            self.apply_lead();
        }
    }

    fn count_give_up(&mut self, why: GiveUp, n: u64) {
        let counter = match why {
            GiveUp::Unrecoverable => &mut self.stats.unrecoverable_datagrams,
            GiveUp::Overrun => &mut self.stats.overrun_datagrams,
            GiveUp::Retired => return,
        };
        *counter = counter.saturating_add(n);
    }

    /// Consumes the front of the window while it is resolved (arrived or given up).
    fn advance(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            match self.window.front() {
                Some(Slot::Present(_)) => {
                    let Some(Slot::Present(received)) = self.window.pop_front() else {
                        unreachable!("front checked above");
                    };
                    self.consume_next(received, ctx);
                }
                Some(Slot::Lost) => {
                    self.window.pop_front();
                    let seq = self.next_seq;
                    self.next_seq = seq.saturating_add(1);
                    self.remember_given_up(seq, self.next_seq);
                    self.stats.lost_datagrams += 1;
                    // A message in reassembly has lost a piece; it is counted lost when
                    // the next message number is seen.
                    self.partial = None;
                }
                _ => break,
            }
        }
        self.apply_lead();
    }

    /// Once caught up with the publisher's heartbeat, its message number tells how many
    /// messages after the last one seen were lost.
    fn apply_lead(&mut self) {
        if let Some((lead_seq, lead_msg)) = self.lead {
            if self.window.is_empty() && lead_seq == self.next_seq && lead_msg > self.next_msg {
                self.lose_messages(lead_msg - self.next_msg);
                self.next_msg = lead_msg;
                self.partial = None;
            }
        }
    }

    /// Moves past datagram `next_seq`, which is `received`, and handles it.
    fn consume_next(&mut self, received: Received, ctx: &mut Ctx<'_>) {
        self.next_seq = self.next_seq.saturating_add(1);
        self.consume(received, ctx);
    }

    /// Handles the next datagram in sequence order.
    fn consume(&mut self, received: Received, ctx: &mut Ctx<'_>) {
        let Received { data, payload } = received;
        if data.is_packed() {
            if data.msg_seq > self.next_msg {
                self.lose_messages(data.msg_seq - self.next_msg);
                self.next_msg = data.msg_seq;
            }
            self.partial = None;
            if data.count == 1 {
                if data.msg_seq >= self.next_msg {
                    let len = PackedMessages::new(&payload).next().map_or(0, <[u8]>::len);
                    self.deliver_only(payload, len, ctx);
                    self.next_msg = data.msg_seq.saturating_add(1);
                }
                return;
            }
            let mut number = data.msg_seq;
            let mut at = 0usize;
            for encoded in PackedMessages::new(&payload) {
                let len = encoded.len();
                if number >= self.next_msg {
                    self.deliver(&payload, at, len, ctx);
                    self.next_msg = number.saturating_add(1);
                }
                number = number.saturating_add(1);
                at += len;
            }
            return;
        }
        let Some(fragment) = data.fragment else {
            return; // decode guarantees a fragment header on unpacked DATA
        };
        let number = data.msg_seq;
        if number < self.next_msg {
            return; // the rest of a message already counted (or skipped at join)
        }
        if number > self.next_msg {
            self.lose_messages(number - self.next_msg);
            self.next_msg = number;
            self.partial = None;
        }
        if data.begin {
            if fragment.total_len as usize > ctx.config.max_message_size {
                self.stats.oversize_messages += 1;
                self.break_message();
                return;
            }
            let mut buf = BytesMut::with_capacity(fragment.total_len as usize);
            buf.extend_from_slice(&payload);
            self.partial = Some(Partial {
                total_len: fragment.total_len,
                buf,
            });
        } else {
            match &mut self.partial {
                Some(partial)
                    if partial.total_len == fragment.total_len
                        && partial.buf.len() == fragment.offset as usize =>
                {
                    partial.buf.extend_from_slice(&payload);
                }
                _ => {
                    // Its beginning was lost (or does not match): the message is lost.
                    self.break_message();
                    return;
                }
            }
        }
        if data.end {
            let Some(partial) = self.partial.take() else {
                return;
            };
            let message = partial.buf.freeze();
            if message.len() == partial.total_len as usize && mcast::is_single_message(&message) {
                self.deliver(&message, 0, message.len(), ctx);
                self.next_msg = number.saturating_add(1);
            } else {
                self.stats.malformed_messages += 1;
                self.break_message();
            }
        }
    }

    /// Counts message `next_msg` lost and skips the rest of its fragments.
    fn break_message(&mut self) {
        self.partial = None;
        self.lose_messages(1);
        self.next_msg = self.next_msg.saturating_add(1);
    }

    /// As [`deliver`](Self::deliver) for a datagram's only message, the first `len`
    /// bytes of `bytes`: its last frame is `bytes` itself, cut down, not a slice of it,
    /// which saves a reference count taken and one dropped (two atomic instructions) on
    /// every datagram of a latency-bound stream.
    fn deliver_only(&mut self, mut bytes: Bytes, len: usize, ctx: &mut Ctx<'_>) {
        let mut message = Message::default();
        let mut frames = MessageFrames::new(&bytes[..len]).peekable();
        let mut last = None;
        let mut byte_len = 0;
        while let Some((start, frame_len)) = frames.next() {
            byte_len += frame_len;
            if frames.peek().is_none() {
                last = Some((start, frame_len));
            } else {
                message.push_frame(bytes.slice(start..start + frame_len));
            }
        }
        if let Some((start, frame_len)) = last {
            bytes.truncate(start + frame_len);
            bytes::Buf::advance(&mut bytes, start);
            message.push_frame(bytes);
        }
        self.queue_delivered(message, byte_len, ctx);
    }

    fn deliver(&mut self, bytes: &Bytes, at: usize, len: usize, ctx: &mut Ctx<'_>) {
        // Frames go straight into the message, which holds two without an allocation:
        // a delivered message costs no allocation of its own, only refcounted slices.
        // One or two frames are built into it whole (an empty message filled in place
        // costs a drop of the empty frame each one replaces).
        let mut byte_len = 0;
        let mut frames = MessageFrames::new(&bytes[at..at + len]).map(|(start, frame_len)| {
            byte_len += frame_len;
            bytes.slice(at + start..at + start + frame_len)
        });
        let message = match (frames.next(), frames.next()) {
            (Some(only), None) => Message::single(only),
            (Some(first), Some(second)) => {
                let mut message = Message::with_topic(first, second);
                for frame in frames {
                    message.push_frame(frame);
                }
                message
            }
            (None, _) => Message::default(),
        };
        self.queue_delivered(message, byte_len, ctx);
    }

    /// Queues `message` for delivery; `byte_len` is the size of its frames, counted by
    /// the caller as it built them.
    fn queue_delivered(&mut self, message: Message, byte_len: usize, ctx: &mut Ctx<'_>) {
        self.stats.delivered_messages += 1;
        self.stats.delivered_bytes += byte_len as u64;
        ctx.messages.push_back((self.id, message));
    }

    fn on_data(&mut self, data: Data, payload: Bytes, ctx: &mut Ctx<'_>) {
        self.last_heard = ctx.now;
        self.publisher_reliable = data.reliable;
        if data.retransmit {
            self.stats.retransmits_received += 1;
        }
        if self.reliable(ctx.config) {
            self.give_up_until(data.trail_seq.min(data.seq), GiveUp::Unrecoverable, ctx);
        }
        if data.seq < self.next_seq {
            if data.seq < self.stats.joined_at_seq {
                self.stats.before_join_datagrams += 1;
            } else if self.was_given_up(data.seq) {
                self.stats.late_datagrams += 1;
            } else {
                self.stats.duplicate_datagrams += 1;
            }
            return;
        }
        if data.seq == self.next_seq && self.window.is_empty() {
            // In order with nothing held back, the common case: consumed at once, as
            // `advance` would after a trip through the window (a push and a pop of a
            // slot several words wide, on every datagram of a clean stream).
            self.consume_next(Received { data, payload }, ctx);
            self.apply_lead();
            return;
        }
        let index = self.slot_for(data.seq, true, ctx);
        match self.window[index] {
            Slot::Present(_) => self.stats.duplicate_datagrams += 1,
            Slot::Lost => self.stats.late_datagrams += 1,
            Slot::Missing { .. } => {
                self.window[index] = Slot::Present(Received { data, payload });
                self.advance(ctx);
            }
        }
    }

    fn on_heartbeat(&mut self, heartbeat: Heartbeat, ctx: &mut Ctx<'_>) {
        self.last_heard = ctx.now;
        self.publisher_reliable = heartbeat.reliable;
        self.stats.heartbeats += 1;
        if self.reliable(ctx.config) {
            self.give_up_until(
                heartbeat.trail_seq.min(heartbeat.lead_seq),
                GiveUp::Unrecoverable,
                ctx,
            );
        }
        if self.lead.is_none_or(|(seq, _)| heartbeat.lead_seq >= seq) {
            self.lead = Some((heartbeat.lead_seq, heartbeat.lead_msg));
        }
        if heartbeat.lead_seq > self.window_end() {
            // The last datagrams before the lead never arrived (tail loss).
            self.slot_for(heartbeat.lead_seq - 1, false, ctx);
        }
        self.advance(ctx);
    }

    /// Another receiver asked for `nak`: hold back our own NAKs for the same datagrams
    /// as if we had sent it.
    fn on_foreign_nak(&mut self, nak: &Nak, ctx: &mut Ctx<'_>) {
        let start = nak.start_seq.max(self.next_seq);
        let end = nak.end_seq().min(self.window_end());
        let mut held_back = false;
        for seq in start..end {
            let postponed = ctx.now + ctx.config.nak_retry + ctx.jitter();
            if let Slot::Missing { deadline, .. } = &mut self.window[(seq - self.next_seq) as usize]
            {
                if *deadline < postponed {
                    *deadline = postponed;
                    held_back = true;
                }
            }
        }
        if held_back {
            self.stats.naks_suppressed += 1;
        }
    }

    /// Acts on every `Missing` slot whose deadline has passed: NAK (reliable) or give up.
    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        if self.deadline.is_none_or(|deadline| deadline > ctx.now) {
            return;
        }
        let reliable = self.reliable(ctx.config);
        let mut run: Option<(u64, u32)> = None;
        let mut next_deadline: Option<Instant> = None;
        let mut exhausted = 0u64;
        for i in 0..self.window.len() {
            let seq = self.next_seq.saturating_add(i as u64);
            let mut nak_this = false;
            if let Slot::Missing { deadline, attempts } = &mut self.window[i] {
                if *deadline > ctx.now {
                    next_deadline = Some(next_deadline.map_or(*deadline, |d| d.min(*deadline)));
                } else if !reliable {
                    self.window[i] = Slot::Lost;
                } else if *attempts >= ctx.config.nak_max_attempts {
                    exhausted += 1;
                    self.window[i] = Slot::Lost;
                } else {
                    *attempts += 1;
                    *deadline = ctx.now + ctx.config.nak_retry + ctx.jitter();
                    next_deadline = Some(next_deadline.map_or(*deadline, |d| d.min(*deadline)));
                    nak_this = true;
                }
            }
            run = match (run, nak_this) {
                (Some((start, len)), true) => Some((start, len + 1)),
                (None, true) => Some((seq, 1)),
                (Some(done), false) => {
                    self.send_nak(done, ctx);
                    None
                }
                (None, false) => None,
            };
        }
        if let Some(done) = run {
            self.send_nak(done, ctx);
        }
        self.stats.nak_exhausted_datagrams += exhausted;
        self.deadline = next_deadline;
        self.advance(ctx);
    }

    fn send_nak(&mut self, (start_seq, len): (u64, u32), ctx: &mut Ctx<'_>) {
        self.stats.naks_sent += 1;
        ctx.naks.push_back(Nak {
            session_id: self.id.session_id,
            stream_id: ctx.config.stream_id,
            start_seq,
            len,
            receiver_id: ctx.receiver_id,
        });
    }

    /// The publisher went silent: give up what is missing and deliver what is held.
    fn retire(&mut self, ctx: &mut Ctx<'_>) {
        self.give_up_until(self.window_end(), GiveUp::Retired, ctx);
    }
}

/// Receives every publisher of one stream on a multicast group, sans-IO. See the
/// [module docs](super) for how the I/O layer drives it.
pub struct Receiver {
    config: ReceiverConfig,
    rng: Rng,
    receiver_id: u32,
    sessions: HashMap<PublisherId, Session, SessionHash>,
    messages: VecDeque<(PublisherId, Message)>,
    naks: VecDeque<Nak>,
    retired: VecDeque<(PublisherId, PublisherStats)>,
    garbage_datagrams: u64,
    other_stream_datagrams: u64,
    rejected_datagrams: u64,
    ignored_datagrams: u64,
    naks_seen: u64,
}

/// The session table's hasher: one lookup per datagram, keyed by the datagram's source
/// address and session id. std's SipHash took about 310 of that lookup's 380
/// instructions (callgrind, busy-poll ping-pong: over a quarter of the receiver's 1,150
/// per datagram). This multiply-rotate mix, seeded per receiver, costs a few per word. Flooding is bounded
/// anyway: the table never holds more than `max_publishers` sessions, so keys made to
/// collide cost at most a scan of that many.
#[derive(Clone, Debug)]
struct SessionHash {
    seed: u64,
}

impl std::hash::BuildHasher for SessionHash {
    type Hasher = SessionHasher;

    fn build_hasher(&self) -> SessionHasher {
        SessionHasher(self.seed)
    }
}

struct SessionHasher(u64);

impl SessionHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for SessionHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's finaliser: the table takes its bucket from the low bits and its tag
        // from the high ones, and the multiply alone leaves the low bits weak.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl Receiver {
    /// A receiver with no publisher yet; each one is joined at the position of the first
    /// datagram heard from it.
    pub fn new(config: ReceiverConfig, now: Instant) -> Result<Receiver, ConfigError> {
        let _ = now;
        config.validate()?;
        let mut rng = Rng::new(config.seed.unwrap_or_else(super::random_u64));
        let receiver_id = rng.next_u64() as u32;
        let sessions = HashMap::with_hasher(SessionHash {
            seed: rng.next_u64(),
        });
        Ok(Receiver {
            config,
            rng,
            receiver_id,
            sessions,
            messages: VecDeque::new(),
            naks: VecDeque::new(),
            retired: VecDeque::new(),
            garbage_datagrams: 0,
            other_stream_datagrams: 0,
            rejected_datagrams: 0,
            ignored_datagrams: 0,
            naks_seen: 0,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ReceiverConfig {
        &self.config
    }

    /// Handles one datagram read from the group, sent from `from`. Invalid datagrams are
    /// counted ([`ReceiverStats::garbage_datagrams`]) and ignored. Copies the payload of
    /// DATA once; [`Receiver::handle_datagram_bytes`] avoids that copy.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8], from: SocketAddr) {
        self.handle(now, datagram, None, from);
    }

    /// As [`Receiver::handle_datagram`], for a datagram the caller already holds as
    /// `Bytes`: delivered frames are slices of it, without a copy.
    pub fn handle_datagram_bytes(&mut self, now: Instant, datagram: Bytes, from: SocketAddr) {
        self.handle(now, &datagram, Some(&datagram), from);
    }

    fn handle(&mut self, now: Instant, datagram: &[u8], owned: Option<&Bytes>, from: SocketAddr) {
        let frame = match mcast::decode(datagram) {
            Ok(frame) => frame,
            Err(_) => {
                self.garbage_datagrams += 1;
                return;
            }
        };
        let Receiver {
            config,
            rng,
            receiver_id,
            sessions,
            messages,
            naks,
            ..
        } = self;
        let mut ctx = Ctx {
            config,
            rng,
            messages,
            naks,
            receiver_id: *receiver_id,
            now,
        };
        let (session_id, stream_id) = match &frame {
            Frame::Data(data, _) => (data.session_id, data.stream_id),
            Frame::Heartbeat(heartbeat) => (heartbeat.session_id, heartbeat.stream_id),
            Frame::Nak(nak) => (nak.session_id, nak.stream_id),
        };
        if stream_id != ctx.config.stream_id {
            self.other_stream_datagrams += 1;
            return;
        }
        if let Frame::Nak(nak) = frame {
            if nak.receiver_id != *receiver_id {
                self.naks_seen += 1;
                if ctx.config.reliable {
                    for session in sessions.values_mut() {
                        if session.id.session_id == nak.session_id {
                            session.on_foreign_nak(&nak, &mut ctx);
                        }
                    }
                }
            }
            return;
        }
        let id = PublisherId {
            addr: from,
            session_id,
        };
        // One lookup per datagram (the entry), not a check and then a fetch.
        let full = sessions.len() >= ctx.config.max_publishers;
        let session = match sessions.entry(id) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let (seq, msg) = match &frame {
                    Frame::Data(data, _) if data.retransmit => {
                        // A repair for others is no position to join at.
                        self.ignored_datagrams += 1;
                        return;
                    }
                    // Join at this datagram; a message whose beginning we missed is skipped.
                    Frame::Data(data, _) if data.begin => (data.seq, data.msg_seq),
                    Frame::Data(data, _) => (data.seq, data.msg_seq.saturating_add(1)),
                    Frame::Heartbeat(heartbeat) => (heartbeat.lead_seq, heartbeat.lead_msg),
                    Frame::Nak(_) => return,
                };
                if full {
                    self.rejected_datagrams += 1;
                    return;
                }
                entry.insert(Session::new(id, seq, msg, now))
            }
        };
        match frame {
            Frame::Data(data, payload) => {
                let start = data.header_len();
                let payload = match owned {
                    Some(bytes) => bytes.slice(start..),
                    None => Bytes::copy_from_slice(payload),
                };
                session.on_data(data, payload, &mut ctx);
            }
            Frame::Heartbeat(heartbeat) => session.on_heartbeat(heartbeat, &mut ctx),
            Frame::Nak(_) => {}
        }
        // Gaps due at once (best effort without reorder timeout, zero NAK delay).
        session.on_timer(&mut ctx);
    }

    /// The next message received, in order per publisher.
    pub fn poll_message(&mut self) -> Option<(PublisherId, Message)> {
        self.messages.pop_front()
    }

    /// Writes the next NAK to send (to the group) into `buf` and returns its length, or
    /// `None`. Runs the timers due at `now` first.
    ///
    /// # Panics
    /// If `buf` is shorter than [`crate::wire::mcast::NAK_LEN`] (32 bytes).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        assert!(
            buf.len() >= NAK_LEN,
            "poll_transmit needs a buffer of 32 bytes"
        );
        if self.naks.is_empty() {
            self.handle_timeout(now);
        }
        self.naks.pop_front().map(|nak| nak.encode(buf))
    }

    /// Writes the next NAK already queued into `buf` and returns its length, or `None`,
    /// without running the timers: for a caller that knows none is due (it keeps
    /// [`Receiver::poll_timeout`]) and only wants what the datagrams it just handled
    /// asked for at once. [`Receiver::poll_transmit`] does both.
    ///
    /// # Panics
    /// If `buf` is shorter than [`crate::wire::mcast::NAK_LEN`] (32 bytes).
    pub fn poll_queued_nak(&mut self, buf: &mut [u8]) -> Option<usize> {
        assert!(
            buf.len() >= NAK_LEN,
            "poll_queued_nak needs a buffer of 32 bytes"
        );
        self.naks.pop_front().map(|nak| nak.encode(buf))
    }

    /// The earliest instant a timer fires (a NAK or a gap given up, a publisher
    /// retired).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .flat_map(|session| {
                let retire = session.last_heard + self.config.publisher_timeout;
                [Some(retire), session.deadline]
            })
            .flatten()
            .min()
    }

    /// Runs the timers due at `now`: NAKs are queued for [`Receiver::poll_transmit`],
    /// gaps given up, silent publishers retired.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Receiver {
            config,
            rng,
            receiver_id,
            sessions,
            messages,
            naks,
            retired,
            ..
        } = self;
        let mut ctx = Ctx {
            config,
            rng,
            messages,
            naks,
            receiver_id: *receiver_id,
            now,
        };
        let mut silent = Vec::new();
        for (id, session) in sessions.iter_mut() {
            session.on_timer(&mut ctx);
            if now.saturating_duration_since(session.last_heard) >= ctx.config.publisher_timeout {
                session.retire(&mut ctx);
                silent.push(*id);
            }
        }
        for id in silent {
            if let Some(session) = sessions.remove(&id) {
                if retired.len() >= ctx.config.max_publishers {
                    retired.pop_front();
                }
                retired.push_back((id, session.snapshot()));
            }
        }
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> ReceiverStats {
        let mut publishers: Vec<_> = self
            .sessions
            .iter()
            .map(|(id, session)| (*id, session.snapshot()))
            .collect();
        publishers.sort_by_key(|(id, _)| *id);
        ReceiverStats {
            publishers,
            retired: self.retired.iter().cloned().collect(),
            garbage_datagrams: self.garbage_datagrams,
            other_stream_datagrams: self.other_stream_datagrams,
            rejected_datagrams: self.rejected_datagrams,
            ignored_datagrams: self.ignored_datagrams,
            naks_seen: self.naks_seen,
        }
    }
}
