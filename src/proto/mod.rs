//! Sans-IO protocol state machines.
//!
//! Nothing here owns a socket, spawns a thread or reads the clock: callers feed received
//! bytes and the current time in, and take bytes to send, events and the next deadline
//! out. The I/O driver stays thin, and tests can drive two state machines against each
//! other over an in-memory link with synthetic time.
//!
//! - [`zmtp`]: one ZMTP 3.x connection (greeting, NULL handshake, messages,
//!   subscriptions, heartbeats, batched output).
//! - [`subscriptions`]: counted prefix subscriptions a publisher keeps per peer.
//! - [`mcast`]: UDP multicast publisher and receiver (sequencing, packing,
//!   fragmentation, loss accounting, NAK-based repair) and a loss generator for tests.

pub mod mcast;
pub mod subscriptions;
pub mod zmtp;

#[cfg(test)]
mod tests_zmtp;
