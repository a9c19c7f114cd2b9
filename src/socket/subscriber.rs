//! [`Subscriber`]: receives the messages whose topic matches one of its prefixes.

use std::time::Duration;

use bytes::Bytes;

use super::{
    check_capacity, Endpoint, Error, Message, RecvMode, SocketHandle, SocketOptions, SocketStats,
};
use crate::io::{Command, Context, Role};
use crate::ring::{
    spsc, Consumer, OverflowPolicy, PopTimeoutError, RingConfig, RingStats, TryPopError,
    WaitStrategy,
};

/// A SUB socket. It receives nothing until it subscribes; subscriptions are prefixes of
/// the first frame, counted (two `subscribe`s of one prefix need two `unsubscribe`s), and
/// re-sent to every peer after a reconnect.
///
/// Implementation notes: the I/O thread pushes received messages into one ring per
/// socket (capacity and policy from [`SocketOptions`]); `recv` pops from it, waiting as
/// [`RecvMode`] says. The I/O thread never waits on this ring, so Block is refused.
pub struct Subscriber {
    handle: SocketHandle,
    inbound: Consumer<Message>,
}

impl Subscriber {
    /// A subscriber with default options on the global context.
    pub fn new() -> Result<Subscriber, Error> {
        Subscriber::with_options(Context::global()?, SocketOptions::default())
    }

    /// A subscriber with `options` on `context`.
    pub fn with_options(context: &Context, options: SocketOptions) -> Result<Subscriber, Error> {
        check_capacity(&options)?;
        if let OverflowPolicy::Block { .. } = options.policy {
            return Err(Error::InvalidOption(
                "a subscriber's queue is filled by the I/O thread, which must not block: \
                 use DropNewest, DropOldest or Buffer"
                    .into(),
            ));
        }
        let wait = match options.recv_mode {
            RecvMode::Blocking => WaitStrategy::default(),
            RecvMode::BusyPoll => WaitStrategy::Yield,
        };
        let (producer, inbound) = spsc(
            options.queue_capacity,
            RingConfig::with_policy(options.policy).wait(wait),
        );
        let handle = SocketHandle::open(context, Role::Subscriber { inbound: producer }, options)?;
        Ok(Subscriber { handle, inbound })
    }

    /// Listens on `endpoint` for publishers that connect; returns the endpoint as bound.
    pub fn bind(&mut self, endpoint: &str) -> Result<Endpoint, Error> {
        self.handle.bind(endpoint)
    }

    /// Connects to a publisher, reconnecting with backoff whenever the connection is lost.
    pub fn connect(&mut self, endpoint: &str) -> Result<(), Error> {
        self.handle.connect(endpoint)
    }

    /// Adds a subscription to topics starting with `prefix` (empty: everything).
    pub fn subscribe(&mut self, prefix: impl AsRef<[u8]>) -> Result<(), Error> {
        self.handle.context.command(Command::Subscribe {
            id: self.handle.id,
            prefix: Bytes::copy_from_slice(prefix.as_ref()),
        })
    }

    /// Removes one subscription to `prefix`.
    pub fn unsubscribe(&mut self, prefix: impl AsRef<[u8]>) -> Result<(), Error> {
        self.handle.context.command(Command::Cancel {
            id: self.handle.id,
            prefix: Bytes::copy_from_slice(prefix.as_ref()),
        })
    }

    /// Waits for the next message.
    pub fn recv(&mut self) -> Result<Message, Error> {
        self.inbound.pop().map_err(|_| Error::Closed)
    }

    /// Waits up to `timeout` for the next message; `Ok(None)` if none came.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, Error> {
        match self.inbound.pop_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(PopTimeoutError::Timeout) => Ok(None),
            Err(PopTimeoutError::Closed) => Err(Error::Closed),
        }
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Result<Option<Message>, Error> {
        match self.inbound.try_pop() {
            Ok(m) => Ok(Some(m)),
            Err(TryPopError::Empty) => Ok(None),
            Err(TryPopError::Closed) => Err(Error::Closed),
        }
    }

    /// Counters of this socket; `dropped` counts messages its full queue refused or
    /// evicted.
    pub fn stats(&self) -> SocketStats {
        let mut s = self.handle.shared.stats();
        let q = self.inbound.stats();
        s.dropped = q.dropped_newest + q.dropped_oldest;
        s
    }

    /// Counters of each connected peer (what it sent us).
    pub fn peer_stats(&self) -> Vec<super::PeerStats> {
        self.handle.shared.peer_stats()
    }

    /// The inbound queue's counters.
    pub fn queue_stats(&self) -> RingStats {
        self.inbound.stats()
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.handle.id)
            .finish()
    }
}
