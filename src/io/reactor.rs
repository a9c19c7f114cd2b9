//! The I/O thread's loop: readiness in, session calls, bytes out.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, TryRecvError};
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::backoff::Backoff;
use super::direct::{FlushTimer, SUSTAINED_FLUSH_DELAY, USER_READ_IDLE};
use super::stream::{ConnectTarget, Listener, Stream, READ_CHUNK};
use super::{lock, Command, ConnIo, DirectConn, Member, PeerLink, Role, SocketId, WAKER_TOKEN};
use crate::proto::zmtp::{Event, Heartbeat, Message, Session, SessionConfig, SessionError};
use crate::ring::{spsc_polled, Consumer, Producer, RingConfig};
use crate::socket::{Endpoint, PeerShared, SocketOptions, SocketShared};
use crate::wire::zmtp::SocketType;
use std::sync::{Mutex, TryLockError};

/// Stop moving queued messages into a session once it holds this many unsent bytes: the
/// rest waits in the peer's ring, where the overflow policy sees it.
const SESSION_HIGH_WATER: usize = 256 * 1024;
/// Messages taken from a ring per batch.
const DRAIN_BATCH: usize = 256;
/// Reads the I/O thread makes, per visit, of a connection its user thread reads.
const IDLE_READ_CHUNKS: usize = 16;
/// Set in the token of a connection's flush timer; the rest is the connection's token.
const TIMER_BIT: usize = 1 << (usize::BITS - 1);

struct SocketEntry {
    role: Role,
    socket_type: SocketType,
    options: SocketOptions,
    shared: Arc<SocketShared>,
    /// A subscriber's prefixes, repeated as often as subscribed (they are counted).
    subscriptions: Vec<Bytes>,
    /// A receiving socket under Block: messages read for which its queue had no room,
    /// oldest first. While any are held, none of its connections is read.
    held: VecDeque<Message>,
    /// When the current pause began.
    paused_at: Option<Instant>,
}

impl SocketEntry {
    /// A receiving socket whose full queue holds its peers back instead of dropping.
    fn pushes_back(&self) -> bool {
        matches!(self.role, Role::Subscriber { .. }) && self.options.holds_senders_back()
    }

    /// Moves held messages into the queue as far as it has room; true when none is left
    /// held (reading may go on).
    fn offer_held(&mut self, now: Instant) -> bool {
        let Role::Subscriber { inbound, .. } = &mut self.role else {
            return true;
        };
        if self.held.is_empty() {
            return true;
        }
        // The consumer only ever frees room, so pushing this many never meets a full
        // ring (whose DropNewest would drop and count).
        let room =
            |inbound: &Producer<Message>| self.options.queue_capacity.saturating_sub(inbound.len());
        if self.paused_at.is_none() && room(inbound) >= self.held.len() {
            // The common case, every read of a receiver that keeps up: all of it fits,
            // nothing stays held, so the receiver need not be told anything.
            hand_over(self.held.drain(..), inbound);
            return true;
        }
        // Raised before the look for room: a receiver that makes room after this look
        // sees it and kicks this thread to look again (see `ReadPause`).
        self.shared.read_paused.raise();
        let n = room(inbound).min(self.held.len());
        hand_over(self.held.drain(..n), inbound);
        if self.held.is_empty() {
            self.shared.read_paused.lower();
            if let Some(at) = self.paused_at.take() {
                let nanos = now.saturating_duration_since(at).as_nanos();
                self.shared.read_pauses.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .read_paused_nanos
                    .fetch_add(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            true
        } else {
            self.paused_at.get_or_insert(now);
            false
        }
    }
    fn session_config(&self) -> SessionConfig {
        let mut c = SessionConfig::new(self.socket_type);
        c.max_message_size = self.options.max_message_size;
        c.heartbeat = self.options.heartbeat_interval.map(|interval| {
            let mut h = Heartbeat::new(interval);
            if let Some(t) = self.options.heartbeat_timeout {
                h.timeout = t;
            }
            h
        });
        c
    }
}

struct Conn {
    socket: SocketId,
    /// The connection's bytes and protocol state; shared with a busy-polling user thread
    /// that reads or writes it directly (see [`ConnIo`]).
    io: Arc<Mutex<ConnIo>>,
    /// A non-blocking connect that has not completed yet.
    connecting: bool,
    dialer: Option<u64>,
    /// A publisher peer's queue, once its handshake is done.
    outbound: Option<Consumer<Arc<Message>>>,
    peer: Arc<PeerShared>,
    ready: bool,
    /// The connection's flush timer (also in its `ConnIo`), so that an expiry can be
    /// put off without the connection's lock.
    flush_timer: Option<Arc<FlushTimer>>,
    /// Its socket may pause reading (a receiving socket under Block): only then does a
    /// read look the socket up to see whether it is paused.
    holds_back: bool,
}

enum DialState {
    Waiting(Instant),
    Active,
}

struct Dialer {
    socket: SocketId,
    target: ConnectTarget,
    backoff: Backoff,
    state: DialState,
    ever_connected: bool,
}

/// Why a connection is being closed.
enum Closing {
    Eof,
    Io,
    Session(SessionError),
}

pub(crate) struct Reactor {
    poll: Poll,
    commands: Receiver<Command>,
    kicked: Arc<AtomicBool>,
    sockets: HashMap<SocketId, SocketEntry>,
    listeners: HashMap<Token, (SocketId, Listener)>,
    conns: HashMap<Token, Conn>,
    /// Multicast members, by the token of their socket.
    members: HashMap<Token, (SocketId, Member)>,
    dialers: HashMap<u64, Dialer>,
    next_token: usize,
    next_dialer: u64,
    /// Reused lists of what a loop iteration must visit, so the loop never allocates.
    due: Vec<Token>,
    due_dialers: Vec<u64>,
    /// Messages of one read, pushed into the subscriber's ring together: one hand-off
    /// (and at most one wake-up of a parked receiver) per read, not per message.
    received: Vec<Message>,
    /// Turns through the connections `resume_reading` reads first.
    resume_turn: usize,
}

impl Reactor {
    pub(crate) fn new(poll: Poll, commands: Receiver<Command>, kicked: Arc<AtomicBool>) -> Self {
        Reactor {
            poll,
            commands,
            kicked,
            sockets: HashMap::new(),
            listeners: HashMap::new(),
            conns: HashMap::new(),
            members: HashMap::new(),
            dialers: HashMap::new(),
            next_token: WAKER_TOKEN.0 + 1,
            next_dialer: 1,
            due: Vec::new(),
            due_dialers: Vec::new(),
            received: Vec::new(),
            resume_turn: 0,
        }
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("volley-io: poll failed, I/O thread stops: {e}");
                return;
            }
            let now = Instant::now();
            for event in events.iter() {
                let token = event.token();
                if token == WAKER_TOKEN {
                    continue;
                }
                if token.0 & TIMER_BIT != 0 {
                    self.on_flush_timer(Token(token.0 & !TIMER_BIT), now);
                    continue;
                }
                if self.listeners.contains_key(&token) {
                    self.accept_all(token, now);
                } else if self.members.contains_key(&token) {
                    self.on_member_readable(token, now);
                } else {
                    let result = self.on_conn_event(token, event.is_writable(), now);
                    if let Err(why) = result {
                        self.close_conn(token, why, now);
                    }
                }
            }
            if !self.handle_commands(now) {
                return;
            }
            if self.kicked.swap(false, Ordering::AcqRel) {
                self.close_failed(now);
                self.service_all_outbound(now);
                self.resume_reading(now);
            }
            self.handle_timers(now);
        }
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    fn next_deadline(&self) -> Option<Instant> {
        let dialers = self.dialers.values().filter_map(|d| match d.state {
            DialState::Waiting(t) => Some(t),
            DialState::Active => None,
        });
        let sessions = self.conns.values().filter_map(|c| {
            let io = lock(&c.io);
            let user_idle =
                (io.read_by_user && !io.paced_by_user).then(|| io.last_read + USER_READ_IDLE);
            match (io.session.poll_timeout(), user_idle) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        let members = self.members.values().filter_map(|(_, m)| match m {
            Member::Tx(tx) => crate::io::lock(tx).poll_timeout(),
            Member::Rx(rx) => crate::io::lock(rx).poll_timeout(),
        });
        let deadline = dialers.chain(sessions).chain(members).min();
        // A publisher's send that needs an earlier wake-up than this (a linger starting)
        // kicks the thread; one that does not, does not pay for a system call.
        for (_, member) in self.members.values() {
            if let Member::Tx(tx) = member {
                crate::io::lock(tx).planned_deadline = deadline;
            }
        }
        deadline
    }

    /// Returns false when the context shuts down.
    fn handle_commands(&mut self, now: Instant) -> bool {
        loop {
            let command = match self.commands.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            };
            match command {
                Command::Open {
                    id,
                    role,
                    socket_type,
                    options,
                    shared,
                } => {
                    self.sockets.insert(
                        id,
                        SocketEntry {
                            role,
                            socket_type,
                            options: *options,
                            shared,
                            subscriptions: Vec::new(),
                            held: VecDeque::new(),
                            paused_at: None,
                        },
                    );
                }
                Command::Bind {
                    id,
                    endpoint,
                    reply,
                } => {
                    let _ = reply.send(self.bind(id, &endpoint));
                }
                Command::Connect { id, target } => {
                    let Some(entry) = self.sockets.get(&id) else {
                        continue;
                    };
                    let key = self.next_dialer;
                    self.next_dialer += 1;
                    let backoff = Backoff::new(
                        entry.options.reconnect_initial,
                        entry.options.reconnect_max,
                        seed(key),
                    );
                    self.dialers.insert(
                        key,
                        Dialer {
                            socket: id,
                            target,
                            backoff,
                            state: DialState::Waiting(now),
                            ever_connected: false,
                        },
                    );
                    self.dial(key, now);
                }
                Command::AddMember { id, member, reply } => {
                    let _ = reply.send(self.add_member(id, member));
                }
                Command::Subscribe { id, prefix } => {
                    self.change_subscription(id, prefix, true, now)
                }
                Command::Cancel { id, prefix } => self.change_subscription(id, prefix, false, now),
                Command::Close { id } => self.close_socket(id, now),
                Command::Shutdown => return false,
            }
        }
    }

    fn bind(
        &mut self,
        id: SocketId,
        endpoint: &Endpoint,
    ) -> Result<Endpoint, crate::socket::Error> {
        if !self.sockets.contains_key(&id) {
            return Err(crate::socket::Error::Closed);
        }
        let (mut listener, bound) = Listener::bind(endpoint)?;
        let token = self.token();
        self.poll
            .registry()
            .register(&mut listener, token, Interest::READABLE)?;
        self.listeners.insert(token, (id, listener));
        Ok(bound)
    }

    fn add_member(&mut self, id: SocketId, member: Member) -> Result<(), crate::socket::Error> {
        if !self.sockets.contains_key(&id) {
            return Err(crate::socket::Error::Closed);
        }
        let (fd, watch) = match &member {
            Member::Tx(tx) => (crate::io::lock(tx).socket().raw().as_raw_fd(), true),
            Member::Rx(rx) => {
                let rx = crate::io::lock(rx);
                (rx.socket().raw().as_raw_fd(), !rx.read_by_user)
            }
        };
        let token = self.token();
        if watch {
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        }
        self.members.insert(token, (id, member));
        // Datagrams may have arrived before registration: edge-triggered readiness would
        // not report them.
        self.on_member_readable(token, Instant::now());
        Ok(())
    }

    fn on_member_readable(&mut self, token: Token, now: Instant) {
        let Some((socket, member)) = self.members.get(&token) else {
            return;
        };
        match member {
            Member::Tx(tx) => crate::io::lock(tx).on_readable(now),
            Member::Rx(rx) => {
                let Some(entry) = self.sockets.get_mut(socket) else {
                    return;
                };
                let mut rx = crate::io::lock(rx);
                deliver_to(entry, &mut self.received, |deliver| {
                    rx.read(&mut crate::io::LazyNow::at(now), usize::MAX, deliver)
                });
            }
        }
    }

    fn member_timers(&mut self, now: Instant) {
        for (socket, member) in self.members.values() {
            match member {
                Member::Tx(tx) => {
                    let mut tx = crate::io::lock(tx);
                    if tx.poll_timeout().is_some_and(|t| t <= now) {
                        tx.on_timeout(now);
                    }
                }
                Member::Rx(rx) => {
                    let mut rx = crate::io::lock(rx);
                    if rx.poll_timeout().is_some_and(|t| t <= now) {
                        if let Some(entry) = self.sockets.get_mut(socket) {
                            deliver_to(entry, &mut self.received, |deliver| {
                                rx.on_timeout(now, deliver)
                            });
                        }
                    }
                }
            }
        }
    }

    fn accept_all(&mut self, token: Token, now: Instant) {
        loop {
            let Some((socket, listener)) = self.listeners.get(&token) else {
                return;
            };
            let socket = *socket;
            match listener.accept() {
                Ok(stream) => {
                    if let Err(e) = self.add_conn(socket, stream, false, None, now) {
                        eprintln!("volley-io: could not register an accepted connection: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors or a peer that reset before accept: this listener
                    // stays; the next readiness tries again.
                    eprintln!("volley-io: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(
        &mut self,
        socket: SocketId,
        mut stream: Stream,
        connecting: bool,
        dialer: Option<u64>,
        now: Instant,
    ) -> io::Result<Token> {
        let entry = self
            .sockets
            .get(&socket)
            .ok_or_else(|| io::Error::other("socket closed"))?;
        let mut session = Session::new(entry.session_config(), now);
        let holds_back = entry.pushes_back();
        for prefix in &entry.subscriptions {
            session.send_subscribe(prefix);
        }
        let peer = Arc::new(PeerShared::new(stream.peer_name()));
        let token = self.token();
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let io = Arc::new(Mutex::new(ConnIo {
            stream,
            session,
            input: BytesMut::with_capacity(READ_CHUNK),
            failed: false,
            closed: false,
            read_by_user: false,
            paced_by_user: false,
            last_read: now,
            deferral: Default::default(),
            last_send: None,
            batching: false,
            write_blocked: false,
            flush_timer: None,
            timer_armed: false,
            flush_bytes: super::direct::DIRECT_FLUSH_BYTES,
        }));
        self.conns.insert(
            token,
            Conn {
                socket,
                io,
                connecting,
                dialer,
                outbound: None,
                peer,
                ready: false,
                flush_timer: None,
                holds_back,
            },
        );
        if !connecting {
            if let Err(why) = self.service_out(token) {
                self.close_conn(token, why, now);
            }
        }
        Ok(token)
    }

    fn dial(&mut self, key: u64, now: Instant) {
        let Some(d) = self.dialers.get(&key) else {
            return;
        };
        let socket = d.socket;
        let result = Stream::connect(&d.target)
            .and_then(|stream| self.add_conn(socket, stream, true, Some(key), now));
        let Some(d) = self.dialers.get_mut(&key) else {
            return;
        };
        match result {
            Ok(_) => d.state = DialState::Active,
            Err(_) => d.state = DialState::Waiting(now + d.backoff.next_delay()),
        }
    }

    fn on_conn_event(&mut self, token: Token, writable: bool, now: Instant) -> Result<(), Closing> {
        let Some(conn) = self.conns.get_mut(&token) else {
            return Ok(());
        };
        if conn.connecting {
            if !writable {
                return Ok(());
            }
            match lock(&conn.io).stream.connect_result() {
                Ok(true) => conn.connecting = false,
                Ok(false) => return Ok(()),
                Err(_) => return Err(Closing::Io),
            }
        }
        self.read_all(token, now, usize::MAX)?;
        self.service_out(token)
    }

    /// Reads until the socket would block (mio readiness is edge-triggered) or `chunks`
    /// reads were made, handing each chunk to the session and acting on its events.
    fn read_all(&mut self, token: Token, now: Instant, chunks: usize) -> Result<(), Closing> {
        for _ in 0..chunks {
            let Some(conn) = self.conns.get_mut(&token) else {
                return Ok(());
            };
            if conn.holds_back
                && self
                    .sockets
                    .get(&conn.socket)
                    .is_some_and(|e| !e.held.is_empty())
            {
                // Paused (its queue is full): the kernel holds the rest, and its flow
                // control the sender. `resume_reading` reads on once there is room.
                return Ok(());
            }
            let shared_io = conn.io.clone();
            let mut io = lock(&shared_io);
            match io.read_input(false) {
                Ok((0, _)) => return Err(Closing::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(Closing::Io),
            }
            let ConnIo { session, input, .. } = &mut *io;
            let received = &mut self.received;
            let result = session.handle_input_with(input, now, &mut |m| received.push(m));
            self.dispatch_events(token, &mut io, now);
            drop(io);
            result.map_err(Closing::Session)?;
        }
        Ok(())
    }

    fn dispatch_events(&mut self, token: Token, io: &mut ConnIo, now: Instant) {
        let ConnIo {
            stream,
            session,
            read_by_user,
            paced_by_user,
            flush_timer,
            ..
        } = io;
        let Some(conn) = self.conns.get_mut(&token) else {
            self.received.clear();
            return;
        };
        let Some(entry) = self.sockets.get_mut(&conn.socket) else {
            // The socket has gone: what this read decoded goes nowhere.
            self.received.clear();
            return;
        };
        // Counted once per call, not per message: a read can hold hundreds of messages,
        // which the session handed to `received` as it decoded them.
        let messages = self.received.len() as u64;
        let bytes: u64 = self.received.iter().map(|m| m.byte_len() as u64).sum();
        let pushes_back = entry.pushes_back();
        while let Some(event) = session.poll_event() {
            match event {
                Event::Ready { .. } => {
                    conn.ready = true;
                    entry.shared.add_peer(&conn.peer);
                    if let Some(d) = conn.dialer.and_then(|k| self.dialers.get_mut(&k)) {
                        if d.ever_connected {
                            entry.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        d.ever_connected = true;
                        d.backoff.reset();
                    }
                    match &entry.role {
                        Role::Publisher { attach } => {
                            // The I/O thread drains this ring when kicked, never parks on
                            // it.
                            let config = RingConfig::with_policy(entry.options.policy);
                            let (queue, consumer) =
                                spsc_polled(entry.options.queue_capacity, config);
                            conn.outbound = Some(consumer);
                            *flush_timer = new_flush_timer(&self.poll, token).map(Arc::new);
                            conn.flush_timer = flush_timer.clone();
                            // Every publisher writes directly when it can: the send
                            // is on a user thread anyway, and a hand-off to this thread
                            // costs a wake-up and a thread hop per message or batch.
                            let _ = attach.send(PeerLink {
                                shared: conn.peer.clone(),
                                queue,
                                direct: conn.io.clone(),
                            });
                            entry.shared.attached.fetch_add(1, Ordering::Release);
                        }
                        Role::Subscriber {
                            direct: Some(direct),
                            ..
                        } => {
                            // The user thread reads it from now on: readiness would only
                            // wake this thread to lose the race for the lock.
                            let _ =
                                self.poll
                                    .registry()
                                    .reregister(stream, token, Interest::WRITABLE);
                            *read_by_user = true;
                            *paced_by_user = pushes_back;
                            let _ = direct.send(DirectConn {
                                io: conn.io.clone(),
                                peer: conn.peer.clone(),
                            });
                            entry.shared.attached.fetch_add(1, Ordering::Release);
                        }
                        Role::Subscriber { direct: None, .. } => {}
                    }
                }
                // Decoded into `received` (see `read_all`); nothing else queues one.
                Event::Message(_) => {}
                Event::Subscribe(_) | Event::Cancel(_) => {
                    let table = Arc::new(session.peer_subscriptions().clone());
                    if let Ok(mut g) = conn.peer.subscriptions.lock() {
                        *g = table;
                    }
                    conn.peer
                        .subscriptions_version
                        .fetch_add(1, Ordering::Release);
                }
            }
        }
        match &mut entry.role {
            Role::Subscriber { .. } if pushes_back => {
                entry.held.extend(self.received.drain(..));
                entry.offer_held(now);
            }
            Role::Subscriber { inbound, .. } => hand_over(self.received.drain(..), inbound),
            // A subscriber's data frames reach a publisher only to be counted.
            Role::Publisher { .. } => self.received.clear(),
        }
        if messages > 0 {
            conn.peer.messages_in.fetch_add(messages, Ordering::Relaxed);
            conn.peer.bytes_in.fetch_add(bytes, Ordering::Relaxed);
            entry
                .shared
                .messages_in
                .fetch_add(messages, Ordering::Relaxed);
            entry.shared.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Moves queued messages into the session and writes until done or the socket
    /// would block.
    fn service_out(&mut self, token: Token) -> Result<(), Closing> {
        let Some(conn) = self.conns.get_mut(&token) else {
            return Ok(());
        };
        if conn.connecting {
            return Ok(());
        }
        let Some(entry) = self.sockets.get(&conn.socket) else {
            return Ok(());
        };
        let Conn {
            io, outbound, peer, ..
        } = conn;
        let mut io = lock(io);
        let ConnIo {
            stream,
            session,
            write_blocked,
            ..
        } = &mut *io;
        loop {
            // Whether the ring may still hold messages: the drain stopped at the session's
            // high-water mark rather than on an empty ring.
            let mut stopped_at_high_water = false;
            if let Some(queue) = outbound {
                let (mut messages, mut bytes) = (0u64, 0u64);
                loop {
                    if session.queued_len() >= SESSION_HIGH_WATER {
                        stopped_at_high_water = true;
                        break;
                    }
                    let n = queue.pop_batch(DRAIN_BATCH, |m| {
                        if session.send_message(m.frames()).is_ok() {
                            messages += 1;
                            bytes += m.byte_len() as u64;
                        }
                    });
                    if n == 0 {
                        break;
                    }
                }
                if messages > 0 {
                    peer.messages_out.fetch_add(messages, Ordering::Relaxed);
                    peer.bytes_out.fetch_add(bytes, Ordering::Relaxed);
                    entry
                        .shared
                        .messages_out
                        .fetch_add(messages, Ordering::Relaxed);
                    entry.shared.bytes_out.fetch_add(bytes, Ordering::Relaxed);
                }
            }
            let before = session.queued_len();
            let written = session.write_to(stream);
            peer.unsent_bytes
                .store(session.queued_len() as u64, Ordering::Relaxed);
            match written {
                Ok(_) => *write_blocked = false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *write_blocked = true;
                    return Ok(());
                }
                Err(_) => return Err(Closing::Io),
            }
            // Stop when nothing is left, or when nothing moved (handshake gate).
            if !stopped_at_high_water || session.queued_len() == before {
                return Ok(());
            }
        }
    }

    fn service_all_outbound(&mut self, now: Instant) {
        self.due.clear();
        self.due.extend(
            self.conns
                .iter()
                .filter(|(_, c)| c.outbound.is_some())
                .map(|(t, _)| *t),
        );
        for i in 0..self.due.len() {
            let token = self.due[i];
            if let Err(why) = self.service_out(token) {
                self.close_conn(token, why, now);
            }
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        self.member_timers(now);
        self.read_idle_user_conns(now);
        self.due_dialers.clear();
        self.due_dialers.extend(
            self.dialers
                .iter()
                .filter(|(_, d)| matches!(d.state, DialState::Waiting(t) if t <= now))
                .map(|(k, _)| *k),
        );
        for i in 0..self.due_dialers.len() {
            let key = self.due_dialers[i];
            self.dial(key, now);
        }
        self.due.clear();
        self.due.extend(
            self.conns
                .iter()
                .filter(|(_, c)| lock(&c.io).session.poll_timeout().is_some_and(|t| t <= now))
                .map(|(t, _)| *t),
        );
        for i in 0..self.due.len() {
            let token = self.due[i];
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            let timed_out = lock(&conn.io).session.handle_timeout(now);
            let result = match timed_out {
                Ok(()) => self.service_out(token),
                Err(e) => Err(Closing::Session(e)),
            };
            if let Err(why) = result {
                self.close_conn(token, why, now);
            }
        }
    }

    fn change_subscription(&mut self, id: SocketId, prefix: Bytes, subscribe: bool, now: Instant) {
        let Some(entry) = self.sockets.get_mut(&id) else {
            return;
        };
        if subscribe {
            entry.subscriptions.push(prefix.clone());
        } else if let Some(i) = entry.subscriptions.iter().position(|p| *p == prefix) {
            entry.subscriptions.remove(i);
        } else {
            return;
        }
        self.due.clear();
        for (token, conn) in self.conns.iter_mut().filter(|(_, c)| c.socket == id) {
            let mut io = lock(&conn.io);
            if subscribe {
                io.session.send_subscribe(&prefix);
            } else {
                io.session.send_cancel(&prefix);
            }
            self.due.push(*token);
        }
        for i in 0..self.due.len() {
            let token = self.due[i];
            if let Err(why) = self.service_out(token) {
                self.close_conn(token, why, now);
            }
        }
    }

    fn close_conn(&mut self, token: Token, why: Closing, now: Instant) {
        let Some(conn) = self.conns.remove(&token) else {
            return;
        };
        {
            let mut io = lock(&conn.io);
            let ConnIo {
                stream, session, ..
            } = &mut *io;
            if let Closing::Session(_) = why {
                // The session may have queued an ERROR for the peer: one best-effort write.
                let _ = session.write_to(stream);
            }
            let _ = self.poll.registry().deregister(stream);
            #[cfg(target_os = "linux")]
            if let Some(timer) = &io.flush_timer {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&timer.raw_fd()));
            }
            // A user thread holding this connection for direct I/O lets go of it, and
            // the descriptor closes with the last holder.
            io.closed = true;
            let _ = io.stream.shutdown();
        }
        if let Some(entry) = self.sockets.get(&conn.socket) {
            if conn.ready {
                entry.shared.remove_peer(&conn.peer);
            }
            if let Closing::Session(e) = &why {
                entry.shared.protocol_errors.fetch_add(1, Ordering::Relaxed);
                if matches!(e, SessionError::MessageTooLarge { .. }) {
                    entry.shared.oversized.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(d) = conn.dialer.and_then(|k| self.dialers.get_mut(&k)) {
            d.state = DialState::Waiting(now + d.backoff.next_delay());
        }
    }

    fn close_socket(&mut self, id: SocketId, now: Instant) {
        // Last chance for queued messages: move and write what the sockets take now.
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.socket == id)
            .map(|(t, _)| *t)
            .collect();
        for token in &tokens {
            let _ = self.service_out(*token);
        }
        self.dialers.retain(|_, d| d.socket != id);
        for token in tokens {
            self.close_conn(token, Closing::Eof, now);
        }
        let listeners: Vec<Token> = self
            .listeners
            .iter()
            .filter(|(_, (s, _))| *s == id)
            .map(|(t, _)| *t)
            .collect();
        for token in listeners {
            if let Some((_, mut l)) = self.listeners.remove(&token) {
                let _ = self.poll.registry().deregister(&mut l);
            }
        }
        let members: Vec<Token> = self
            .members
            .iter()
            .filter(|(_, (s, _))| *s == id)
            .map(|(t, _)| *t)
            .collect();
        for token in members {
            if let Some((_, member)) = self.members.remove(&token) {
                let fd = match &member {
                    Member::Tx(tx) => {
                        let mut tx = crate::io::lock(tx);
                        tx.flush(now);
                        tx.socket().raw().as_raw_fd()
                    }
                    Member::Rx(rx) => crate::io::lock(rx).socket().raw().as_raw_fd(),
                };
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
        }
        self.sockets.remove(&id);
    }

    /// Reads the connections their user thread has not read for a while: a PING is
    /// answered, a closed peer noticed, and messages wait in the ring, not the kernel.
    fn read_idle_user_conns(&mut self, now: Instant) {
        self.due.clear();
        self.due.extend(
            self.conns
                .iter()
                .filter(|(_, c)| {
                    let io = lock(&c.io);
                    io.read_by_user && !io.paced_by_user && io.last_read + USER_READ_IDLE <= now
                })
                .map(|(t, _)| *t),
        );
        for i in 0..self.due.len() {
            let token = self.due[i];
            if let Some(conn) = self.conns.get(&token) {
                lock(&conn.io).last_read = now;
            }
            let result = self
                // Bounded: a publisher that keeps writing would otherwise keep this
                // thread reading, and the user thread, back from elsewhere, locked out.
                .read_all(token, now, IDLE_READ_CHUNKS)
                .and_then(|()| self.service_out(token));
            if let Err(why) = result {
                self.close_conn(token, why, now);
            }
        }
    }

    /// Offers each paused socket's held messages to its queue again (a receiver that
    /// made room kicked this thread), and reads the connections of every socket that
    /// could take them all: what arrived while paused raised no new readiness edge.
    fn resume_reading(&mut self, now: Instant) {
        self.due.clear();
        for (id, entry) in &mut self.sockets {
            if entry.held.is_empty() || !entry.offer_held(now) {
                continue;
            }
            self.due.extend(
                self.conns
                    .iter()
                    .filter(|(_, c)| c.socket == *id)
                    .map(|(t, _)| *t),
            );
        }
        // A different connection first each time, so that one whose sender never stops
        // cannot fill every pause's room ahead of the others.
        self.resume_turn = self.resume_turn.wrapping_add(1);
        if !self.due.is_empty() {
            let first = self.resume_turn % self.due.len();
            self.due.rotate_left(first);
        }
        let due = std::mem::take(&mut self.due);
        for &token in &due {
            let result = self
                .read_all(token, now, usize::MAX)
                .and_then(|()| self.service_out(token));
            if let Err(why) = result {
                self.close_conn(token, why, now);
            }
        }
        self.due = due;
    }

    /// A publisher connection's flush timer expired: writes the batch its sender left.
    fn on_flush_timer(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let mut io = match conn.io.try_lock() {
            Ok(io) => io,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // The sender holds it, mid-send: in a sustained burst it writes the batch
                // itself once full. Look again after the delay, in case this send was its
                // last, instead of waiting for the lock and making the sender wake this
                // thread as it unlocks: in a throughput run that wait was the largest
                // source of futex calls (a third of this thread's, 2026-12-02).
                if let Some(timer) = &conn.flush_timer {
                    timer.clear();
                    let _ = timer.set(Some(SUSTAINED_FLUSH_DELAY));
                }
                return;
            }
        };
        io.on_flush_timer();
        drop(io);
        if let Err(why) = self.service_out(token) {
            self.close_conn(token, why, now);
        }
    }

    /// Closes the connections a user thread found broken while reading or writing them
    /// directly.
    fn close_failed(&mut self, now: Instant) {
        self.due.clear();
        self.due.extend(
            self.conns
                .iter()
                .filter(|(_, c)| lock(&c.io).failed)
                .map(|(t, _)| *t),
        );
        for i in 0..self.due.len() {
            let token = self.due[i];
            self.close_conn(token, Closing::Io, now);
        }
    }
}

/// Moves `messages` into a subscriber's inbound ring. A refusal is counted by the ring
/// (its policy) and ends a `push_batch`; the rest goes on, each item meeting the policy.
/// The I/O thread never waits here.
fn hand_over(mut messages: impl Iterator<Item = Message>, inbound: &mut Producer<Message>) {
    while inbound.push_batch(messages.by_ref()).error.is_some() {}
}

/// Messages a multicast read gathers before it hands them to the subscriber's ring.
/// A read goes on until the socket is empty, which can take thousands of messages: the
/// receiver gets the first of them after this many, not after the whole read.
const DELIVER_BATCH: usize = 256;

/// Runs `read` with a sink that pushes into the subscriber's inbound ring (a refusal is
/// counted by the ring's policy; the I/O thread never waits) and counts what arrived.
/// Messages go in batches through `batch`, as a TCP read's do: one release of ring slots
/// and one look at a parked receiver per batch instead of a locked instruction per
/// message.
fn deliver_to(
    entry: &mut SocketEntry,
    batch: &mut Vec<Message>,
    read: impl FnOnce(&mut dyn FnMut(Message)) -> usize,
) {
    let Role::Subscriber { inbound, .. } = &mut entry.role else {
        return;
    };
    let (mut messages, mut bytes) = (0u64, 0u64);
    read(&mut |message: Message| {
        messages += 1;
        bytes += message.byte_len() as u64;
        batch.push(message);
        if batch.len() >= DELIVER_BATCH {
            hand_over(batch.drain(..), inbound);
        }
    });
    hand_over(batch.drain(..), inbound);
    if messages > 0 {
        entry
            .shared
            .messages_in
            .fetch_add(messages, Ordering::Relaxed);
        entry.shared.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A flush timer for the publisher connection `token`, registered with `poll`; `None`
/// if the platform has none or registration fails (its batches then kick this thread).
fn new_flush_timer(poll: &Poll, token: Token) -> Option<super::direct::FlushTimer> {
    let timer = super::direct::FlushTimer::new().ok()?;
    #[cfg(target_os = "linux")]
    poll.registry()
        .register(
            &mut SourceFd(&timer.raw_fd()),
            Token(token.0 | TIMER_BIT),
            Interest::READABLE,
        )
        .ok()?;
    #[cfg(not(target_os = "linux"))]
    let _ = (poll, token);
    Some(timer)
}

fn seed(key: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
