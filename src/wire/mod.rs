//! Encode/decode only: byte layouts of the protocols volley speaks.
//!
//! Nothing in here keeps connection state, touches a socket or reads the clock. Decoders
//! take `&[u8]` and report either "need more bytes", a decoded value, or a typed error;
//! they never allocate according to a size announced by the peer, so they are safe to
//! feed with hostile input (see the fuzz targets under `fuzz/`).
//!
//! - [`zmtp`]: ZMTP 3.0/3.1 greeting, frames, commands and socket types (libzmq wire
//!   compatibility).
//! - [`mcast`]: volley's UDP multicast datagrams (DATA, HEARTBEAT, NAK), see
//!   `docs/multicast-protocol.md`.

pub mod mcast;
pub mod zmtp;
