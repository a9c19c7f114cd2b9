//! `udp://` endpoints on [`Publisher`](super::Publisher) and
//! [`Subscriber`](super::Subscriber): options, joining a group, and the counters.
//!
//! A `bind` or `connect` to `udp://GROUP:PORT` joins the group (both words mean the same
//! thing for multicast). The publisher encodes and sends on the calling thread; its
//! socket hears only NAKs (a kernel filter drops the rest, its own data included), and
//! a best-effort publisher's socket does not even join the group. The
//! subscriber's messages arrive through its inbound ring (blocking mode) or are read by
//! the calling thread itself ([`RecvMode::BusyPoll`](super::RecvMode::BusyPoll)), the
//! socket's only reader then: the I/O thread runs its timers, and what arrives while
//! the thread is elsewhere waits in the kernel's receive buffer. Filtering
//! by topic prefix happens at each subscriber, since every member receives every datagram.
//!
//! ```no_run
//! use volley::proto::mcast::LossConfig;
//! use volley::socket::{Message, Publisher, SocketOptions, Subscriber};
//!
//! let group = "udp://239.255.0.77:7777?iface=127.0.0.1"; // loopback: no network needed
//! let mut options = SocketOptions::default();
//! options.multicast = options.multicast.reliable(); // both sides; default best effort
//! // The loss generator, for tests: 5% of received datagrams dropped, seeded.
//! options.multicast.loss = LossConfig::drop_rate(0.05, 7);
//! let mut sub = Subscriber::with_options(volley::io::Context::global()?, options.clone())?;
//! sub.connect(group)?;
//! sub.subscribe("cpu.")?;
//! let mut publisher = Publisher::with_options(volley::io::Context::global()?, options)?;
//! publisher.bind(group)?;
//! publisher.send(Message::from_parts(["cpu.load", "0.42"]))?;
//! let msg = sub.recv()?;
//! let counters = sub.multicast_stats()[0].protocol.total();
//! println!("{msg:?}: {} delivered, {} lost", counters.delivered_messages, counters.lost_messages);
//! # Ok::<(), volley::socket::Error>(())
//! ```

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Endpoint, Error, SocketOptions};
use crate::io::{open_socket, Command, Context, McastRx, McastTx, Member, SocketId};
use crate::proto::mcast::{
    random_session_id, LossConfig, LossStats, Receiver, ReceiverConfig, ReceiverStats, Sender,
    SenderConfig, SenderStats,
};
use crate::proto::subscriptions::SubscriptionTable;
use crate::socket::UdpEndpoint;

/// Default [`MulticastOptions::recv_buffer`]: 4 MiB, enough for a burst of some 3,000
/// full datagrams while the reading thread is descheduled.
pub const DEFAULT_RECV_BUFFER: usize = 4 << 20;

/// Default linger of a publisher's partly filled datagram. A send that comes 2 µs or
/// more after the previous `send` returned goes out at once (so request/response traffic
/// never waits); during a burst of back-to-back sends, messages share datagrams for up to
/// this long, and full datagrams wait (as long) to be written together
/// ([`SenderConfig::burst_datagrams`]). Set 0 for a datagram per send.
pub const DEFAULT_LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// How a socket's multicast members behave. Reliable mode must be chosen on both sides
/// ([`MulticastOptions::reliable`] sets both).
#[derive(Debug, Clone)]
pub struct MulticastOptions {
    /// The publishing side: datagram size, linger, retransmit buffer, heartbeats.
    pub sender: SenderConfig,
    /// The receiving side: NAK timing, receive window, publisher limits.
    pub receiver: ReceiverConfig,
    /// Impairment of the receive path for tests and demos (default off).
    pub loss: LossConfig,
    /// `SO_RCVBUF` asked for (default [`DEFAULT_RECV_BUFFER`]); the kernel caps it at
    /// `net.core.rmem_max` and volley warns on stderr when it granted less.
    pub recv_buffer: usize,
    /// Let the kernel hand a subscriber several datagrams of one sender in one read
    /// (UDP GRO, Linux 5.0 on; default off). A publisher's burst arrives as one buffer
    /// instead of one per datagram: the kernel queues and copies out one buffer where it
    /// handled each datagram, and a sending process on the same host no longer cuts its
    /// GSO writes (on loopback 1.1-2.1x the messages per second, see README). The costs: the kernel then counts a dropped buffer as
    /// one drop, however many datagrams it held, so `kernel_drops` becomes a lower
    /// bound (the per-publisher `lost_messages` and `lost_datagrams` stay exact); and a
    /// busy-polling subscriber's empty polls cost more (the datagram size comes in a
    /// control message, which a plain `recvfrom` does not return): for throughput, not
    /// for the lowest latency. Where the kernel refuses it, volley warns and reads
    /// datagram by datagram.
    pub gro: bool,
}

impl Default for MulticastOptions {
    fn default() -> Self {
        MulticastOptions {
            sender: SenderConfig {
                linger: DEFAULT_LINGER,
                ..SenderConfig::default()
            },
            receiver: ReceiverConfig::default(),
            loss: LossConfig::default(),
            recv_buffer: DEFAULT_RECV_BUFFER,
            gro: false,
        }
    }
}

impl MulticastOptions {
    /// These options with NAK-based reliable delivery on both sides.
    pub fn reliable(mut self) -> Self {
        self.sender.reliable = true;
        self.receiver.reliable = true;
        self
    }
}

/// Counters of one multicast member of a publisher.
#[derive(Debug, Clone)]
pub struct MulticastSenderStats {
    /// The group, as joined.
    pub endpoint: Endpoint,
    /// The protocol's counters: messages, datagrams, retransmissions, NAKs, heartbeats.
    pub protocol: SenderStats,
    /// Datagrams the kernel refused to send (a full send buffer, no route).
    pub send_errors: u64,
    /// Datagrams (NAKs among them) the kernel dropped before the I/O thread read them.
    pub kernel_drops: u64,
}

/// Counters of one multicast member of a subscriber.
#[derive(Debug, Clone)]
pub struct MulticastReceiverStats {
    /// The group, as joined.
    pub endpoint: Endpoint,
    /// The protocol's counters, per publisher: delivered, lost (exact), unrecoverable,
    /// duplicates, NAKs; and garbage datagrams.
    pub protocol: ReceiverStats,
    /// Datagrams the kernel dropped before volley could read them (`SO_RXQ_OVFL`). The
    /// kernel reports drops with the next datagram it does queue, so the drops at the end
    /// of a burst show once the next datagram (a heartbeat at the latest) arrives; after a
    /// busy-polling subscriber read datagrams one at a time (which carry no report), the
    /// count is asked of the kernel when these counters are read, and is current then.
    /// With [`MulticastOptions::gro`] on, a dropped buffer of several datagrams counts
    /// once: a lower bound.
    pub kernel_drops: u64,
    /// Datagrams larger than the receive buffer, dropped.
    pub truncated: u64,
    /// Messages delivered by the protocol that no subscription matched.
    pub filtered: u64,
    /// What the loss generator did, when one is configured.
    pub loss: Option<LossStats>,
    /// `SO_RCVBUF` as granted by the kernel.
    pub recv_buffer: usize,
    /// NAKs the kernel refused to send.
    pub send_errors: u64,
    /// Failed reads.
    pub recv_errors: u64,
}

fn check(result: Result<(), crate::proto::mcast::ConfigError>) -> Result<(), Error> {
    result.map_err(|e| Error::InvalidOption(e.to_string()))
}

fn with_real_port(endpoint: &UdpEndpoint, port: u16) -> Endpoint {
    let mut e = endpoint.clone();
    e.port = port;
    Endpoint::Udp(e)
}

fn register(context: &Context, id: SocketId, member: Member) -> Result<(), Error> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    context.command(Command::AddMember { id, member, reply })?;
    answer.recv().map_err(|_| Error::ContextGone)?
}

fn warn(warning: Option<String>) {
    if let Some(w) = warning {
        eprintln!("volley: warning: {w}");
    }
}

/// Joins `endpoint` as a publishing member of socket `id`.
pub(crate) fn join_tx(
    context: &Context,
    id: SocketId,
    endpoint: &UdpEndpoint,
    options: &SocketOptions,
) -> Result<(Arc<Mutex<McastTx>>, Endpoint), Error> {
    let config = options.multicast.sender.clone();
    check(config.validate())?;
    // Only a reliable publisher reads (NAKs): a best-effort one does not join the group,
    // so the kernel does not hand it a copy of everything sent there. A reliable one's
    // kernel filter admits NAKs only, so its own data (loopback) does not wake the I/O
    // thread or crowd the NAKs out of the buffer.
    let (socket, warning) = open_socket(
        &Endpoint::Udp(endpoint.clone()),
        options.multicast.recv_buffer,
        config.reliable,
    )?;
    warn(warning);
    socket.accept_only_naks()?;
    let joined = with_real_port(endpoint, socket.group().port());
    let sender = Sender::new(config, random_session_id(), Instant::now())
        .map_err(|e| Error::InvalidOption(e.to_string()))?;
    let tx = Arc::new(Mutex::new(McastTx::new(socket, sender, joined.clone())));
    register(context, id, Member::Tx(tx.clone()))?;
    Ok((tx, joined))
}

/// Joins `endpoint` as a receiving member of socket `id`, filtering with `subscriptions`.
pub(crate) fn join_rx(
    context: &Context,
    id: SocketId,
    endpoint: &UdpEndpoint,
    options: &SocketOptions,
    subscriptions: SubscriptionTable,
) -> Result<(Arc<Mutex<McastRx>>, Endpoint), Error> {
    let multicast = &options.multicast;
    check(multicast.receiver.validate())?;
    let (mut socket, warning) = open_socket(
        &Endpoint::Udp(endpoint.clone()),
        multicast.recv_buffer,
        true,
    )?;
    warn(warning);
    if multicast.gro {
        if let Err(e) = socket.enable_gro() {
            warn(Some(format!(
                "{endpoint}: UDP GRO refused by the kernel ({e}); reading datagram by datagram"
            )));
        }
    }
    let joined = with_real_port(endpoint, socket.group().port());
    let receiver = Receiver::new(multicast.receiver.clone(), Instant::now())
        .map_err(|e| Error::InvalidOption(e.to_string()))?;
    let rx = Arc::new(Mutex::new(McastRx::new(
        socket,
        receiver,
        joined.clone(),
        &multicast.loss,
        subscriptions,
        options.recv_mode == super::RecvMode::BusyPoll,
    )));
    register(context, id, Member::Rx(rx.clone()))?;
    Ok((rx, joined))
}

pub(crate) fn sender_stats(tx: &Mutex<McastTx>) -> MulticastSenderStats {
    let mut tx = crate::io::lock(tx);
    MulticastSenderStats {
        endpoint: tx.endpoint().clone(),
        protocol: tx.stats(),
        send_errors: tx
            .counters
            .send_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        kernel_drops: tx.kernel_drops(),
    }
}

pub(crate) fn receiver_stats(rx: &Mutex<McastRx>) -> MulticastReceiverStats {
    use std::sync::atomic::Ordering::Relaxed;
    let mut rx = crate::io::lock(rx);
    MulticastReceiverStats {
        endpoint: rx.endpoint().clone(),
        protocol: rx.receiver_stats(),
        kernel_drops: rx.kernel_drops(),
        truncated: rx.truncated(),
        filtered: rx.filtered,
        loss: rx.loss_stats(),
        recv_buffer: rx.socket().recv_buffer,
        send_errors: rx.counters.send_errors.load(Relaxed),
        recv_errors: rx.counters.recv_errors.load(Relaxed),
    }
}
