//! A connection's bytes and protocol state, shared by the I/O thread and a user thread
//! that reads or writes it directly.
//!
//! A publisher's `send` encodes into the peer's session and writes it on the calling
//! thread whenever nothing older waits in that peer's ring (any [`RecvMode`]): an
//! isolated message costs the system call a raw socket would make, and a burst is
//! batched (see [`ConnIo::send_direct`]). With [`RecvMode::BusyPoll`], after the
//! handshake the I/O thread also hands each connection of a subscriber to its user
//! thread, which reads it itself: no thread hand-off and no wake-up. The I/O thread keeps
//! doing what must happen while the user thread is elsewhere (heartbeats, reconnects,
//! reads and writes on readiness, the tail of a batch), under the same lock. A reading
//! user thread only `try_lock`s; a publisher waits for the lock, which the I/O thread
//! holds only for one write or read.
//!
//! [`RecvMode`]: crate::socket::RecvMode
//! [`RecvMode::BusyPoll`]: crate::socket::RecvMode::BusyPoll

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::stream::{Deferral, Stream};
use super::BURST_GAP;
use crate::proto::zmtp::{FrameBody, Message, Session};
use crate::socket::PeerShared;

pub(crate) struct ConnIo {
    pub(crate) stream: Stream,
    pub(crate) session: Session,
    pub(crate) input: BytesMut,
    /// Set by a user thread that found the connection broken; the I/O thread closes it
    /// at its next look (the user thread kicks it).
    pub(crate) failed: bool,
    /// Set by the I/O thread when it closed the connection: holders let go.
    pub(crate) closed: bool,
    /// Handed to a user thread that reads it: the I/O thread stops watching it for input
    /// and only reads it when the user thread has not for [`USER_READ_IDLE`] (so a PING
    /// is answered and a closed peer noticed while the application is elsewhere).
    pub(crate) read_by_user: bool,
    /// Read by a user thread whose socket is under Block: its reads, made only when the
    /// application wants messages, are the socket's backpressure, so the I/O thread
    /// never reads it in the user thread's place (it would have to hold what it read
    /// while the user thread reads newer bytes past it).
    pub(crate) paced_by_user: bool,
    /// When the connection was last read.
    pub(crate) last_read: Instant,
    /// What a busy-polling reader left in the kernel's receive queue (see
    /// [`Stream::read_input`]).
    pub(crate) deferral: Deferral,
    /// When a user thread last sent on it directly (publishers).
    pub(crate) last_send: Option<Instant>,
    /// A direct send appended to a batch not yet written: the sender is in a burst.
    pub(crate) batching: bool,
    /// The last write would have blocked: the writable edge, served by the I/O thread,
    /// writes next, and direct sends only append until then.
    pub(crate) write_blocked: bool,
    /// A publisher connection's timer that writes the batch of a sustained burst once
    /// the sender stops appending to it (see [`SUSTAINED_FLUSH_DELAY`]); registered with
    /// the I/O thread's poll. `None` where the platform has none: every batch then kicks
    /// the I/O thread.
    pub(crate) flush_timer: Option<Arc<FlushTimer>>,
    /// `flush_timer` runs.
    pub(crate) timer_armed: bool,
    /// The batch size at which a sustained burst's sender writes (see
    /// [`DIRECT_FLUSH_BYTES`]): halved when the timer had to write a batch, grown by an
    /// eighth when the sender filled one first, so that a slower sender writes smaller
    /// batches itself instead of waking the I/O thread for each.
    pub(crate) flush_bytes: usize,
}

/// How long a connection read by a user thread may go unread before the I/O thread
/// reads it in its place.
pub(crate) const USER_READ_IDLE: std::time::Duration = std::time::Duration::from_millis(10);

/// Bytes a user thread may leave queued in a session before it hands further messages
/// to the peer's ring (the I/O thread's own limit for draining that ring).
pub(crate) const DIRECT_HIGH_WATER: usize = 256 * 1024;
/// A batch being built by direct sends is written by the sending thread at this size
/// (the start of [`ConnIo::flush_bytes`]): large enough that a system call carries a
/// few hundred small messages, small enough that a sustained burst of them fills it well within [`SUSTAINED_FLUSH_DELAY`] (64 B
/// messages at 5 M/s fill 16 KiB in about 45 us), so its own writes come first and the
/// I/O thread's timer rarely has to. In two alternating rounds with a busy-poll
/// receiver, 64 KiB measured 4.1-4.4 M msgs/s and this size 3.5-6.3 M.
pub(crate) const DIRECT_FLUSH_BYTES: usize = 16 * 1024;
/// The range [`ConnIo::flush_bytes`] adapts in.
const MIN_FLUSH_BYTES: usize = 2 * 1024;
const MAX_FLUSH_BYTES: usize = 64 * 1024;

/// The longest a message of a sustained burst waits in its batch before the I/O thread
/// writes it. A burst's first batch is written by the I/O thread as soon as the sender
/// kicks it; a batch that follows a deferred one begun less than [`SUSTAIN_WINDOW`]
/// before is written by the sender itself at [`DIRECT_FLUSH_BYTES`] (as adapted), and
/// only a timer covers its tail: a long burst costs no wake-up of the I/O thread per batch, whose thread would
/// otherwise compete with the sender and the receiver for the cores.
pub(crate) const SUSTAINED_FLUSH_DELAY: Duration = Duration::from_micros(50);
/// A batch begun less than this after the previous one, which was deferred too, belongs
/// to a sustained burst (see [`SUSTAINED_FLUSH_DELAY`]). Longer than the delay, so that
/// a batch the timer wrote still counts.
const SUSTAIN_WINDOW: Duration = Duration::from_micros(200);

/// What [`ConnIo::send_direct`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirectSend {
    /// In the session; written, or a write of it is already due (a kick not yet served,
    /// the writable edge, or the flush timer).
    Sent,
    /// In the session, batched: the caller must kick the I/O thread, which writes it.
    Deferred,
    /// The session holds too much: use the peer's ring.
    Full,
    /// The connection is broken.
    Broken,
}

fn frames_len<F: AsRef<[u8]>>(frames: &[F]) -> usize {
    // Frame headers are 2 or 9 bytes; the estimate only decides when to write.
    frames.iter().map(|f| f.as_ref().len() + 2).sum()
}

/// A connection handed to a busy-polling user thread.
pub(crate) struct DirectConn {
    pub(crate) io: Arc<Mutex<ConnIo>>,
    pub(crate) peer: Arc<PeerShared>,
}

impl ConnIo {
    /// Reads until the socket has nothing more (or `limit` messages were delivered),
    /// handing each message to `deliver`; writes whatever the session owes the peer
    /// (a PONG). Returns how many messages were delivered; marks the connection failed
    /// on end-of-stream, an error or a protocol violation.
    pub(crate) fn read_messages(
        &mut self,
        now: Instant,
        limit: usize,
        deliver: &mut dyn FnMut(Message),
    ) -> usize {
        let mut delivered = 0;
        self.last_read = now;
        while !self.failed && !self.closed && delivered < limit {
            let (n, room) = match self.read_input(true) {
                Ok((0, _)) => {
                    self.failed = true;
                    break;
                }
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.failed = true;
                    break;
                }
            };
            let result = self
                .session
                .handle_input_with(&mut self.input, now, &mut |m| {
                    delivered += 1;
                    deliver(m);
                });
            // A short read emptied the socket: asking again would only return WouldBlock,
            // a system call on the message's path. The caller's next poll reads on.
            let drained = n < room;
            // A subscriber's peer sends nothing but messages after the handshake: any
            // other event is of no use here.
            while self.session.poll_event().is_some() {}
            if result.is_err() {
                self.failed = true;
            }
            if drained {
                break;
            }
        }
        self.flush();
        delivered
    }

    /// Reads what the socket holds into `input` (see [`Stream::read_input`]); `defer`
    /// for a busy-polling user thread.
    pub(crate) fn read_input(&mut self, defer: bool) -> io::Result<(usize, usize)> {
        self.stream
            .read_input(&mut self.input, &mut self.deferral, defer)
    }

    /// Encodes `frames` into the session on the calling thread. An isolated message is
    /// written at once (one system call, no thread hand-off); one that follows the
    /// previous send within [`BURST_GAP`] joins a batch that is written once it holds
    /// [`DIRECT_FLUSH_BYTES`], or by the I/O thread when the caller kicks it (the first
    /// batch of a burst) or when the flush timer expires (the tail of a sustained burst,
    /// see [`SUSTAINED_FLUSH_DELAY`]), so a burst of small messages costs one system call
    /// per batch, not per message.
    pub(crate) fn send_direct<F: FrameBody>(&mut self, frames: &[F]) -> DirectSend {
        if self.failed || self.closed {
            return DirectSend::Broken;
        }
        let before = self.session.queued_len();
        if before >= DIRECT_HIGH_WATER {
            // The socket is not keeping up: the message waits in the peer's ring, where
            // the overflow policy sees it.
            return DirectSend::Full;
        }
        if self.session.send_message(frames).is_err() {
            return DirectSend::Broken;
        }
        if before > 0 || self.write_blocked {
            // A write of what the session holds is already due (a kick not yet served,
            // or the writable edge after a write that would have blocked): append, and
            // write here only once the batch is worth a system call.
            self.batching = true;
            if !self.write_blocked && before + frames_len(frames) >= self.flush_bytes {
                if self.timer_armed {
                    // Filled before the timer: a larger batch may be filled in time too.
                    self.flush_bytes =
                        (self.flush_bytes + self.flush_bytes / 8).min(MAX_FLUSH_BYTES);
                }
                self.write_now();
            }
        } else {
            // Only a send into an empty session reads the clock. One that finds the
            // batch before it already written (by the I/O thread) is still in the burst,
            // however long ago the batch began; if that batch began within the sustain
            // window, the burst is sustained and this batch waits for the sender's own
            // write or the flush timer instead of kicking the I/O thread.
            let now = Instant::now();
            let since = self.last_send.map(|t| now.saturating_duration_since(t));
            let continued = std::mem::take(&mut self.batching);
            let burst = continued || since.is_some_and(|d| d < BURST_GAP);
            self.last_send = Some(now);
            if burst {
                if continued && since.is_some_and(|d| d < SUSTAIN_WINDOW) && self.arm_flush_timer()
                {
                    return DirectSend::Sent;
                }
                return DirectSend::Deferred;
            }
            self.write_now();
        }
        if self.failed {
            DirectSend::Broken
        } else {
            DirectSend::Sent
        }
    }

    /// Makes sure the flush timer runs; false when there is none.
    fn arm_flush_timer(&mut self) -> bool {
        if self.timer_armed {
            return true;
        }
        let Some(timer) = &self.flush_timer else {
            return false;
        };
        if timer.set(Some(SUSTAINED_FLUSH_DELAY)).is_err() {
            return false;
        }
        self.timer_armed = true;
        true
    }

    /// The flush timer expired (I/O thread): a batch still waiting was not filled in
    /// time, so the next ones are written at half the size. The caller writes it.
    pub(crate) fn on_flush_timer(&mut self) {
        self.timer_armed = false;
        if let Some(timer) = &self.flush_timer {
            timer.clear();
        }
        if self.session.has_output() && !self.write_blocked {
            self.flush_bytes = (self.flush_bytes / 2).max(MIN_FLUSH_BYTES);
        }
    }

    fn write_now(&mut self) {
        self.flush();
        if self.timer_armed && !self.session.has_output() {
            if let Some(timer) = &self.flush_timer {
                // A failure leaves it armed: it then fires on an empty session, harmless.
                if timer.set(None).is_ok() {
                    self.timer_armed = false;
                }
            }
        }
        // The gap to the next send counts from the end of this write, which may take
        // longer than a burst's gap itself.
        self.last_send = Some(Instant::now());
    }

    fn flush(&mut self) {
        if self.failed || self.closed || !self.session.has_output() {
            return;
        }
        match self.session.write_to(&mut self.stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
            Err(_) => self.failed = true,
        }
    }
}

/// A one-shot timer whose expiry makes a descriptor readable, with sub-millisecond
/// precision (the poll's own timeout counts whole milliseconds).
pub(crate) struct FlushTimer {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

impl FlushTimer {
    /// A disarmed timer.
    #[cfg(target_os = "linux")]
    pub(crate) fn new() -> io::Result<FlushTimer> {
        use std::os::fd::FromRawFd;
        // SAFETY: timerfd_create takes no pointers; a negative result is an error.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(FlushTimer { fd })
    }

    /// There is no such timer on this platform: batches kick the I/O thread instead.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn new() -> io::Result<FlushTimer> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no timerfd"))
    }

    /// Arms the timer to expire once after `delay`, or disarms it (`None`).
    #[cfg(target_os = "linux")]
    pub(crate) fn set(&self, delay: Option<Duration>) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let delay = delay.unwrap_or(Duration::ZERO);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: delay.as_secs() as libc::time_t,
                tv_nsec: delay.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the call's duration; the old value is
        // not asked for (null).
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn set(&self, _delay: Option<Duration>) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no timerfd"))
    }

    /// Consumes an expiry, so that the descriptor is no longer readable.
    #[cfg(target_os = "linux")]
    pub(crate) fn clear(&self) {
        use std::os::fd::AsRawFd;
        let mut ticks = [0u8; 8];
        // SAFETY: `ticks` is 8 writable bytes, what a timerfd read needs; a disarmed or
        // unexpired timer returns EAGAIN, which is ignored.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), ticks.as_mut_ptr().cast(), ticks.len()) };
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn clear(&self) {}

    /// The descriptor, for registration with the poll.
    #[cfg(target_os = "linux")]
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }
}
