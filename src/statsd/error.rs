//! Errors of the StatsD client: a metric refused on the calling thread ([`MetricError`]),
//! a client that could not be built ([`BuildError`]), and a datagram the background thread
//! could not send ([`SendError`], handed to the error handler).

use std::fmt;
use std::io;

use super::{Flavour, LineError};

/// Which part of a metric a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The metric name (prefix included), an event title or a service check name.
    Name,
    /// A tag key.
    TagKey,
    /// A tag value.
    TagValue,
    /// A set member.
    SetValue,
    /// A container id.
    ContainerId,
    /// An event's or service check's host name, aggregation key or source type.
    Field,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Name => "name",
            Part::TagKey => "tag key",
            Part::TagValue => "tag value",
            Part::SetValue => "set value",
            Part::ContainerId => "container id",
            Part::Field => "field",
        })
    }
}

/// Why a metric was not queued. Nothing was sent for it; the client counts it in
/// [`ClientStats`](super::ClientStats) (`invalid` or `dropped`).
///
/// It is `Copy` and allocation-free, so refusing a metric costs no more than taking one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricError {
    /// A name, tag or set value was empty.
    Empty(Part),
    /// A name, tag or set value held a byte the StatsD line syntax reserves (`:` `|` `@`
    /// `#` `,` newline, and `=` in Telegraf tags). Turn on
    /// [`ClientBuilder::sanitize`](super::ClientBuilder::sanitize) to have such bytes
    /// replaced by `_` instead.
    ReservedByte {
        /// Where the byte was.
        part: Part,
        /// The byte.
        byte: u8,
    },
    /// A value was NaN or infinite.
    NotFinite,
    /// A timer value was negative (Etsy statsd drops such lines as bad).
    NegativeTimer,
    /// A sample rate outside `(0, 1]`, or below the 1e-9 resolution the wire format keeps.
    InvalidSampleRate,
    /// The wire flavour cannot express this (a distribution or an event for Etsy, a gauge
    /// delta for DogStatsD, ...): sending it anyway would make the daemon miscount.
    Unsupported {
        /// The client's flavour.
        flavour: Flavour,
        /// What it cannot express.
        what: &'static str,
    },
    /// The queue was full and the policy (DropNewest, or Buffer with its budget spent)
    /// refused the metric; counted in `dropped`.
    QueueFull,
    /// The queue stayed full for the whole Block timeout; counted in `dropped`.
    Timeout,
    /// The background sender is gone (the client is shutting down).
    Closed,
    /// A pre-formatted line given to [`Client::send_line`](super::Client::send_line) is
    /// malformed or not expressible in the client's flavour.
    BadLine(LineError),
}

impl fmt::Display for MetricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricError::Empty(part) => write!(f, "empty {part}"),
            MetricError::ReservedByte { part, byte } => write!(
                f,
                "{part} contains {:?}, which the StatsD line syntax reserves",
                char::from(*byte)
            ),
            MetricError::NotFinite => f.write_str("value is NaN or infinite"),
            MetricError::NegativeTimer => f.write_str("timer value is negative"),
            MetricError::InvalidSampleRate => {
                f.write_str("sample rate must be in (0, 1] and at least 1e-9")
            }
            MetricError::Unsupported { flavour, what } => {
                write!(f, "the {flavour:?} flavour cannot express {what}")
            }
            MetricError::QueueFull => f.write_str("metric dropped: queue full"),
            MetricError::Timeout => {
                f.write_str("metric dropped: queue stayed full (Block timeout)")
            }
            MetricError::Closed => f.write_str("metric dropped: client closed"),
            MetricError::BadLine(e) => write!(f, "bad line: {e}"),
        }
    }
}

impl std::error::Error for MetricError {}

/// Why a client could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The server address is neither `host:port`, `udp://host:port`, `unix://PATH` nor a
    /// path, or did not resolve.
    Address(String),
    /// An option is out of range (payload size, capacity, interval).
    Option(String),
    /// The prefix or a default tag is not valid for the flavour.
    Metric(MetricError),
    /// Opening the socket or starting the sender thread failed.
    Io(io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Address(s) => write!(f, "server address: {s}"),
            BuildError::Option(s) => write!(f, "option: {s}"),
            BuildError::Metric(e) => write!(f, "prefix or default tags: {e}"),
            BuildError::Io(e) => write!(f, "i/o: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Metric(e) => Some(e),
            BuildError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for BuildError {
    fn from(e: io::Error) -> Self {
        BuildError::Io(e)
    }
}

/// A datagram the background thread could not send (the lines in it are lost and
/// counted in `send_errors`). Handed to the client's error handler.
#[derive(Debug)]
pub struct SendError {
    /// The operating system's error.
    pub error: io::Error,
    /// Payload bytes in the datagram.
    pub bytes: usize,
    /// Metric lines in the datagram.
    pub lines: u64,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sending a {}-byte datagram of {} lines failed: {}",
            self.bytes, self.lines, self.error
        )
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
