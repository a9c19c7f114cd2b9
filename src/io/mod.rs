//! The driver: one mio thread per [`Context`] owns every socket of that context, reads
//! and writes them, and drives the sans-IO ZMTP sessions. It makes no protocol decision
//! of its own.
//!
//! User threads talk to it two ways: rare requests (bind, connect, subscribe, close) go
//! through a command channel plus the poll's waker; messages are written into the
//! connection by the sending thread itself when it can (see `direct`), and otherwise go
//! through lock-free rings. A user thread wakes the I/O thread only when it is not
//! already due to look (`Context::kick`), so a burst of sends costs one wake-up, not one
//! per message.

mod backoff;
mod direct;
mod mcast;
mod reactor;
mod stream;
mod udp;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Waker};

use crate::proto::zmtp::Message;
use crate::ring::Producer;
use crate::socket::{Endpoint, Error, PeerShared, SocketOptions, SocketShared};

pub(crate) use direct::{ConnIo, DirectConn, DirectSend};

/// A send that comes at least this long after the previous one returned goes out at
/// once (TCP: written; multicast: its datagram flushed); one that follows sooner is part
/// of a burst and is batched with the next ones. A loop that sends back to back calls
/// again within a few hundred nanoseconds; a request/response exchange, even on loopback,
/// takes several microseconds to come back, so its sends never wait.
pub(crate) const BURST_GAP: std::time::Duration = std::time::Duration::from_micros(2);
pub(crate) use mcast::{lock, open_socket, LazyNow, McastRx, McastTx};
pub(crate) use stream::ConnectTarget;

pub(crate) type SocketId = u64;

/// What the I/O thread hands to a publisher handle when a
/// subscriber's handshake completes: the producing end of that peer's outbound ring.
pub(crate) struct PeerLink {
    pub(crate) shared: Arc<PeerShared>,
    pub(crate) queue: Producer<Arc<Message>>,
    /// The connection itself, which the publisher writes directly when nothing older
    /// waits in `queue`.
    pub(crate) direct: Arc<Mutex<ConnIo>>,
}

/// A multicast member of a socket, shared by its user handle and the I/O thread.
#[derive(Clone)]
pub(crate) enum Member {
    Tx(Arc<Mutex<McastTx>>),
    Rx(Arc<Mutex<McastRx>>),
}

/// The I/O thread's side of a socket.
pub(crate) enum Role {
    /// New peers' queues are sent through `attach`.
    Publisher { attach: Sender<PeerLink> },
    /// Received messages go into `inbound`; a busy-polling subscriber's connections are
    /// also handed over through `direct`.
    Subscriber {
        inbound: Producer<Message>,
        direct: Option<Sender<DirectConn>>,
    },
}

pub(crate) enum Command {
    Open {
        id: SocketId,
        role: Role,
        /// What the handshake announces (PUB or PUSH for a publisher role, SUB or PULL
        /// for a subscriber role).
        socket_type: crate::wire::zmtp::SocketType,
        options: Box<SocketOptions>,
        shared: Arc<SocketShared>,
    },
    Bind {
        id: SocketId,
        endpoint: Endpoint,
        reply: Sender<Result<Endpoint, Error>>,
    },
    Connect {
        id: SocketId,
        target: ConnectTarget,
    },
    /// Watch a multicast member: its readiness and its timers.
    AddMember {
        id: SocketId,
        member: Member,
        reply: Sender<Result<(), Error>>,
    },
    Subscribe {
        id: SocketId,
        prefix: Bytes,
    },
    Cancel {
        id: SocketId,
        prefix: Bytes,
    },
    Close {
        id: SocketId,
    },
    Shutdown,
}

/// One I/O thread and the sockets it drives. Cheap to clone; the thread stops when the
/// last clone and the last socket made from it are gone.
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    /// Set by a user thread that queued messages; cleared by the I/O thread just before
    /// it looks at every outbound ring.
    kicked: Arc<AtomicBool>,
    next_socket: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

const WAKER_TOKEN: mio::Token = mio::Token(0);

impl Context {
    /// Starts a new I/O thread, for sockets that should not share one.
    pub fn new() -> io::Result<Context> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let (commands, receiver): (Sender<Command>, Receiver<Command>) =
            crossbeam_channel::unbounded();
        let kicked = Arc::new(AtomicBool::new(false));
        let reactor = reactor::Reactor::new(poll, receiver, kicked.clone());
        let thread = std::thread::Builder::new()
            .name("volley-io".into())
            .spawn(move || reactor.run())?;
        Ok(Context {
            inner: Arc::new(ContextInner {
                commands,
                waker,
                kicked,
                next_socket: AtomicU64::new(1),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The process-wide default context, started on first use.
    pub fn global() -> Result<&'static Context, Error> {
        static GLOBAL: OnceLock<Context> = OnceLock::new();
        if let Some(c) = GLOBAL.get() {
            return Ok(c);
        }
        let c = Context::new()?;
        Ok(GLOBAL.get_or_init(|| c))
    }

    pub(crate) fn next_socket_id(&self) -> SocketId {
        self.inner.next_socket.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request to the I/O thread and wakes it.
    pub(crate) fn command(&self, command: Command) -> Result<(), Error> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| Error::ContextGone)?;
        self.inner.waker.wake().map_err(Error::Io)
    }

    /// Tells the I/O thread that outbound rings have new messages. Only the first kick
    /// after the I/O thread last looked costs a system call: the swap is an RMW, and the
    /// I/O thread clears the flag (also an RMW) before it drains, so a message pushed
    /// after its drain began is always followed by a fresh wake-up.
    #[inline]
    pub(crate) fn kick(&self) {
        if !self.inner.kicked.swap(true, Ordering::AcqRel) {
            let _ = self.inner.waker.wake();
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        let _ = self.waker.wake();
        if let Ok(mut t) = self.thread.lock() {
            if let Some(t) = t.take() {
                if t.thread().id() != std::thread::current().id() {
                    let _ = t.join();
                }
            }
        }
    }
}
