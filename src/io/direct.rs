//! A connection's bytes and protocol state, shared by the I/O thread and a busy-polling
//! user thread.
//!
//! With [`RecvMode::BusyPoll`](crate::socket::RecvMode::BusyPoll), after the handshake
//! the I/O thread hands each connection of the socket to its user thread, which then
//! reads (a subscriber) or writes (a publisher) it itself: a message costs the system
//! calls a raw socket would make, with no thread hand-off and no wake-up. The I/O thread
//! keeps doing what must happen while the user thread is elsewhere (heartbeats,
//! reconnects, reads and writes on readiness), under the same lock; the user thread only
//! ever `try_lock`s, so it never waits for the I/O thread.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::stream::Stream;
use crate::proto::zmtp::{Event, Message, Session};
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
    /// When the connection was last read.
    pub(crate) last_read: Instant,
}

/// How long a connection read by a user thread may go unread before the I/O thread
/// reads it in its place.
pub(crate) const USER_READ_IDLE: std::time::Duration = std::time::Duration::from_millis(10);

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
        scratch: &mut [u8],
        now: Instant,
        limit: usize,
        deliver: &mut dyn FnMut(Message),
    ) -> usize {
        let mut delivered = 0;
        self.last_read = now;
        while !self.failed && !self.closed && delivered < limit {
            let n = match self.stream.read(scratch) {
                Ok(0) => {
                    self.failed = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.failed = true;
                    break;
                }
            };
            self.input.extend_from_slice(&scratch[..n]);
            let result = self.session.handle_input(&mut self.input, now);
            while let Some(event) = self.session.poll_event() {
                // A subscriber's peer sends nothing but messages after the handshake.
                if let Event::Message(m) = event {
                    delivered += 1;
                    deliver(m);
                }
            }
            if result.is_err() {
                self.failed = true;
            }
        }
        self.flush();
        delivered
    }

    /// Queues `frames` and writes what the socket takes now; the I/O thread writes the
    /// rest when the socket has room. Returns false if the connection is broken.
    pub(crate) fn write_message(&mut self, frames: &[Bytes]) -> bool {
        if self.failed || self.closed || self.session.send_message(frames).is_err() {
            return false;
        }
        self.flush();
        !self.failed
    }

    fn flush(&mut self) {
        if self.failed || self.closed || !self.session.has_output() {
            return;
        }
        match self.session.write_to(&mut self.stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.failed = true,
        }
    }
}
