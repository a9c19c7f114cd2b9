//! Multicast members: a socket joined to a group plus the sans-IO state machine that
//! speaks our datagram protocol on it. Nothing here decides anything about the protocol;
//! it moves datagrams between the socket and [`crate::proto::mcast`].
//!
//! Both kinds sit behind a mutex shared by a user thread and the I/O thread. The user
//! thread does the hot work itself (a publisher encodes and sends on `send`; a busy-polling
//! subscriber reads on `recv`), so a message does not cross a thread on its way, which is
//! what keeps multicast latency near a raw socket's. The I/O thread does what must happen
//! when the user thread is elsewhere: timers (linger, heartbeats, NAK delays), NAKs
//! arriving at a publisher, and reads for a blocking subscriber. The lock is uncontended
//! in the common case: each side takes it only for its own events.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::udp::{McastSocket, RecvBatch, BATCH};
use super::BURST_GAP;
use crate::proto::mcast::{
    LossConfig, LossGenerator, LossStats, Receiver, ReceiverStats, SendError, Sender, SenderStats,
};
use crate::proto::subscriptions::SubscriptionTable;
use crate::proto::zmtp::Message;
use crate::socket::Endpoint;

/// Locks a member, shrugging off poison: a member's state stays consistent between calls
/// (no call leaves it half-updated on a panic path that matters to the other side).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Datagrams gathered before one `sendmmsg`.
const SEND_BATCH: usize = BATCH;

/// Counters a user thread reads without taking the member's lock.
#[derive(Debug, Default)]
pub(crate) struct McastCounters {
    pub(crate) send_errors: AtomicU64,
    pub(crate) recv_errors: AtomicU64,
}

/// A publisher's membership: its [`Sender`] and the socket.
pub(crate) struct McastTx {
    socket: McastSocket,
    sender: Sender,
    endpoint: Endpoint,
    /// Encoded datagrams waiting for one `sendmmsg`; reused.
    out: Vec<Vec<u8>>,
    /// The length of each datagram in `out`.
    lens: [usize; SEND_BATCH],
    spare: Vec<Vec<u8>>,
    batch: RecvBatch,
    pub(crate) counters: McastCounters,
    /// The deadline the I/O thread last planned for; a send that needs an earlier one
    /// must wake it.
    pub(crate) planned_deadline: Option<Instant>,
    /// [`BURST_GAP`] after the last `send` returned: a send from then on goes at once
    /// instead of opening a linger. (Kept as the instant, not the time of the send: a
    /// comparison per send instead of a subtraction.)
    burst_until: Option<Instant>,
}

/// The clock, read at most once, and only if a send needs it.
#[derive(Default)]
pub(crate) struct LazyNow(Option<Instant>);

impl LazyNow {
    /// A clock already read.
    pub(crate) fn at(now: Instant) -> LazyNow {
        LazyNow(Some(now))
    }

    pub(crate) fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// Empty polls by a busy-polling user between two looks at the receiver's timers: a look
/// needs the clock (a sizeable share of an empty poll), and the timers (NAK delays of
/// hundreds of microseconds, a publisher's 10 s retirement) do not need it every poll.
const EMPTY_POLLS_PER_TIMER_CHECK: u32 = 32;

impl McastTx {
    pub(crate) fn new(socket: McastSocket, sender: Sender, endpoint: Endpoint) -> McastTx {
        McastTx {
            socket,
            sender,
            endpoint,
            out: Vec::with_capacity(SEND_BATCH),
            lens: [0; SEND_BATCH],
            spare: Vec::new(),
            batch: RecvBatch::new(),
            counters: McastCounters::default(),
            planned_deadline: None,
            burst_until: None,
        }
    }

    pub(crate) fn socket(&self) -> &McastSocket {
        &self.socket
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Queues one message and sends whatever is due now. Returns whether the I/O thread
    /// must be woken to honour an earlier deadline (a linger that just started).
    pub(crate) fn send<B: AsRef<[u8]>>(
        &mut self,
        frames: &[B],
        clock: &mut LazyNow,
    ) -> Result<bool, SendError> {
        // A datagram is open only during a burst (or the linger after one), and its linger
        // timer is already planned: a message that fits it needs neither the clock (a
        // sizeable share of a small send) nor a look at what else is due.
        let in_burst = self.sender.has_open();
        if in_burst && self.sender.append_to_open(frames)? {
            return Ok(false);
        }
        let now = clock.now();
        self.sender.send_message(frames, now)?;
        if !in_burst && self.burst_until.is_none_or(|t| now >= t) {
            // Not in a burst: nothing to pack with, so waiting would only add latency.
            self.sender.flush();
        }
        // A send that wrote datagrams spent microseconds in the kernel: the gap to the
        // next send counts from its end, or every send after a full datagram would look
        // like the start of a new burst.
        let wrote = self.sender.transmit_due(now) && self.transmit(now);
        let end = if wrote { Instant::now() } else { now };
        self.burst_until = end.checked_add(BURST_GAP.min(self.sender.config().linger));
        let due = self.sender.poll_timeout();
        Ok(match (due, self.planned_deadline) {
            (Some(due), Some(planned)) => due < planned,
            (Some(_), None) => true,
            (None, _) => false,
        })
    }

    /// Closes a partly filled datagram and sends it, with a heartbeat announcing the
    /// stream's lead (see [`Sender::announce`]): after a user's flush, a receiver that lost
    /// the tail learns of it (and NAKs it, or counts it lost) even if the publisher then
    /// goes away.
    pub(crate) fn flush(&mut self, now: Instant) {
        self.sender.flush();
        self.sender.announce();
        self.transmit(now);
    }

    /// Writes every datagram the sender has due, in `sendmmsg` batches. A datagram the
    /// kernel refuses (a full send buffer, no route) is counted as a send error: in
    /// reliable mode it stays in the retransmit buffer and a NAK brings it back. Returns
    /// whether anything was written.
    pub(crate) fn transmit(&mut self, now: Instant) -> bool {
        let mut wrote = false;
        loop {
            // The buffers keep their full length (the datagram's length is in `lens`):
            // sizing them per datagram would clear a datagram's worth of bytes per send.
            let size = self.sender.config().max_datagram_size;
            while self.out.len() < SEND_BATCH {
                let mut buf = self.spare.pop().unwrap_or_default();
                if buf.len() < size {
                    buf.resize(size, 0);
                }
                match self.sender.poll_transmit(now, &mut buf) {
                    Some(len) => {
                        self.lens[self.out.len()] = len;
                        self.out.push(buf);
                        // Nothing more due (the usual case after one send): go to the
                        // system call now rather than poll the sender again first.
                        if !self.sender.transmit_due(now) {
                            break;
                        }
                    }
                    None => {
                        self.spare.push(buf);
                        break;
                    }
                }
            }
            if self.out.is_empty() {
                return wrote;
            }
            wrote = true;
            let full = self.out.len() == SEND_BATCH;
            let sent = if let [datagram] = &self.out[..] {
                self.socket.send_batch(&[&datagram[..self.lens[0]]])
            } else {
                let mut slices: [&[u8]; SEND_BATCH] = [&[]; SEND_BATCH];
                for ((slot, datagram), &len) in slices.iter_mut().zip(&self.out).zip(&self.lens) {
                    *slot = &datagram[..len];
                }
                self.socket.send_batch(&slices[..self.out.len()])
            }
            .unwrap_or_default();
            let failed = (self.out.len() - sent) as u64;
            if failed > 0 {
                self.counters
                    .send_errors
                    .fetch_add(failed, Ordering::Relaxed);
            }
            self.spare.append(&mut self.out);
            if !full {
                return wrote;
            }
        }
    }

    /// Reads what arrived on the group (NAKs for this publisher; everything else is
    /// counted and ignored by the sender) and sends any retransmissions.
    pub(crate) fn on_readable(&mut self, now: Instant) {
        loop {
            match self.socket.recv_batch(&mut self.batch) {
                Ok(0) => break,
                Ok(_) => {
                    for (datagram, _) in self.batch.datagrams() {
                        self.sender.handle_datagram(now, datagram);
                    }
                }
                Err(_) => {
                    self.counters.recv_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.transmit(now);
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) {
        self.sender.handle_timeout(now);
        self.transmit(now);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.sender.poll_timeout()
    }

    pub(crate) fn stats(&self) -> SenderStats {
        self.sender.stats()
    }

    pub(crate) fn kernel_drops(&mut self) -> u64 {
        self.socket.kernel_drops()
    }
}

/// A subscriber's membership: its [`Receiver`], the socket, the optional loss generator
/// in the receive path, and the subscriptions (multicast filters at the receiver: every
/// member gets every datagram).
pub(crate) struct McastRx {
    socket: McastSocket,
    receiver: Receiver,
    endpoint: Endpoint,
    loss: Option<LossGenerator<(Bytes, SocketAddr)>>,
    pub(crate) subscriptions: SubscriptionTable,
    batch: RecvBatch,
    /// Where each batch's datagrams are gathered before they are handed out as `Bytes`.
    arena: BytesMut,
    nak_buf: Vec<u8>,
    /// Messages delivered by the protocol that no subscription matched.
    pub(crate) filtered: u64,
    pub(crate) counters: McastCounters,
    /// The subscriber busy-polls: its thread is the socket's only reader, and the I/O
    /// thread, which does not watch the socket's readiness then, only runs the timers.
    /// (Were both to read, every datagram would wake the I/O thread to fight the user
    /// thread for the lock.)
    pub(crate) read_by_user: bool,
    /// The user thread's next read asks for one datagram: the socket was empty last
    /// time, so the next datagram probably comes alone (a request/response exchange).
    /// After one arrives, the read after it asks for a whole batch again, so that a burst
    /// is read in batches.
    read_one: bool,
    /// The receiver's earliest timer (a NAK due, a gap to give up) as of the last time it
    /// changed here: a read that finds nothing runs the timers only once this has passed,
    /// instead of walking every publisher's session on each empty poll. The I/O thread
    /// runs them, too, on the deadline it plans.
    timers_due: Option<Instant>,
    /// Empty polls by the user since the timers were last looked at.
    empty_polls: u32,
}

impl McastRx {
    pub(crate) fn new(
        socket: McastSocket,
        receiver: Receiver,
        endpoint: Endpoint,
        loss: &LossConfig,
        subscriptions: SubscriptionTable,
        read_by_user: bool,
    ) -> McastRx {
        McastRx {
            socket,
            receiver,
            endpoint,
            loss: (!loss.is_off()).then(|| LossGenerator::new(loss.clone())),
            subscriptions,
            batch: RecvBatch::new(),
            arena: BytesMut::new(),
            nak_buf: vec![0; 1500],
            filtered: 0,
            counters: McastCounters::default(),
            read_by_user,
            read_one: false,
            timers_due: None,
            empty_polls: 0,
        }
    }

    pub(crate) fn socket(&self) -> &McastSocket {
        &self.socket
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Reads until the socket is empty (the I/O thread's readiness is edge-triggered) or
    /// `limit` messages were delivered, handing every message a subscription matches to
    /// `deliver`. Returns how many messages were delivered. A busy-polling user thread
    /// stops at the first batch that was not full instead: the socket is very likely
    /// empty then, and it calls again anyway, so proving it would cost a system call
    /// per message in a ping-pong.
    pub(crate) fn read(
        &mut self,
        clock: &mut LazyNow,
        limit: usize,
        deliver: &mut dyn FnMut(Message),
    ) -> usize {
        let mut delivered = 0;
        let mut heard = false;
        while delivered < limit {
            let max = if self.read_by_user && self.read_one {
                1
            } else {
                BATCH
            };
            let read = if max == 1 {
                self.socket.recv_one(&mut self.batch)
            } else {
                self.socket.recv_batch(&mut self.batch)
            };
            match read {
                Ok(0) => {
                    self.read_one = self.read_by_user;
                    break;
                }
                Ok(n) => {
                    heard = true;
                    let now = clock.now();
                    self.read_one = self.read_by_user && max == BATCH && n == 1;
                    // The batch's datagrams are copied back to back into one buffer, and
                    // every delivered frame is a slice of it: one buffer per batch
                    // instead of an allocation per datagram, and none at all once the
                    // previous batch's messages are dropped (the buffer is reclaimed).
                    let total = self.batch.datagrams().map(|(d, _)| d.len()).sum();
                    self.arena.clear();
                    self.arena.reserve(total);
                    for (datagram, _) in self.batch.datagrams() {
                        self.arena.extend_from_slice(datagram);
                    }
                    let mut rest = self.arena.split().freeze();
                    for (datagram, from) in self.batch.datagrams() {
                        // The last datagram takes what is left instead of a slice of
                        // it: a datagram read alone costs no reference count of its own.
                        let bytes = if datagram.len() == rest.len() {
                            std::mem::take(&mut rest)
                        } else {
                            rest.split_to(datagram.len())
                        };
                        match &mut self.loss {
                            None => self.receiver.handle_datagram_bytes(now, bytes, from),
                            Some(loss) => loss.push(now, (bytes, from)),
                        }
                    }
                    delivered += self.release(now, deliver);
                    if self.read_by_user {
                        // One batch per poll: the user takes its messages before polling
                        // again, so by the next read every slice of this batch's buffer
                        // is usually gone and the buffer is reused. Reading on while they
                        // are still queued took a fresh buffer per batch (for 8 KB
                        // datagrams, a quarter-megabyte mapping and its page faults).
                        break;
                    }
                }
                Err(_) => {
                    self.counters.recv_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        // Datagrams queue the NAKs due at once (a gap found with no NAK delay) and set
        // timers; the timers already set need running only once the earliest is due.
        if heard {
            while let Some(len) = self.receiver.poll_queued_nak(&mut self.nak_buf) {
                self.send_nak(len);
            }
        } else if self.read_by_user {
            self.empty_polls += 1;
            if self.empty_polls < EMPTY_POLLS_PER_TIMER_CHECK {
                return delivered;
            }
        }
        self.empty_polls = 0;
        if self.timers_due.is_none() && !heard {
            return delivered;
        }
        let now = clock.now();
        let due = self.timers_due.is_some_and(|due| due <= now);
        if due {
            self.send_naks(now);
        }
        if heard || due {
            self.timers_due = self.receiver.poll_timeout();
        }
        delivered
    }

    /// Moves what the loss generator lets through into the receiver, then what the
    /// receiver can deliver out.
    fn release(&mut self, now: Instant, deliver: &mut dyn FnMut(Message)) -> usize {
        if let Some(loss) = &mut self.loss {
            while let Some((datagram, from)) = loss.pop(now) {
                self.receiver.handle_datagram_bytes(now, datagram, from);
            }
        }
        let mut delivered = 0;
        while let Some((_, message)) = self.receiver.poll_message() {
            if self.subscriptions.matches(message.topic()) {
                deliver(message);
                delivered += 1;
            } else {
                self.filtered += 1;
            }
        }
        delivered
    }

    /// Runs the receiver's timers and sends the NAKs they, or earlier datagrams, queued.
    fn send_naks(&mut self, now: Instant) {
        while let Some(len) = self.receiver.poll_transmit(now, &mut self.nak_buf) {
            self.send_nak(len);
        }
    }

    fn send_nak(&mut self, len: usize) {
        if self.socket.send_batch(&[&self.nak_buf[..len]]).is_err() {
            self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn on_timeout(&mut self, now: Instant, deliver: &mut dyn FnMut(Message)) -> usize {
        self.receiver.handle_timeout(now);
        let delivered = self.release(now, deliver);
        self.send_naks(now);
        self.timers_due = self.receiver.poll_timeout();
        delivered
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let loss = self.loss.as_ref().and_then(LossGenerator::poll_timeout);
        match (self.receiver.poll_timeout(), loss) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn receiver_stats(&self) -> ReceiverStats {
        self.receiver.stats()
    }

    pub(crate) fn loss_stats(&self) -> Option<LossStats> {
        self.loss.as_ref().map(LossGenerator::stats)
    }

    pub(crate) fn kernel_drops(&mut self) -> u64 {
        self.socket.kernel_drops()
    }

    pub(crate) fn truncated(&self) -> u64 {
        self.batch.truncated
    }
}

/// Opens the socket for a member, turning the kernel's refusal into an error that names
/// the endpoint.
pub(crate) fn open_socket(
    endpoint: &Endpoint,
    recv_buffer: usize,
    join: bool,
) -> io::Result<(McastSocket, Option<String>)> {
    let Endpoint::Udp(udp) = endpoint else {
        return Err(io::Error::other(format!(
            "{endpoint}: not a udp:// endpoint"
        )));
    };
    McastSocket::open(udp, recv_buffer, join)
        .map_err(|e| io::Error::new(e.kind(), format!("{endpoint}: {e}")))
}
