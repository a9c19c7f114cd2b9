//! A StatsD metric sender that never blocks the caller: Etsy statsd, DogStatsD and
//! Telegraf dialects.
//!
//! ```no_run
//! use volley::statsd::{Client, Flavour, Metric};
//! let client = Client::builder("127.0.0.1:8125").prefix("api").build()?;
//! client.count("requests", 1)?;                      // api.requests:1|c
//! client.gauge("queue", -3.0)?;                      // api.queue:0|g\napi.queue:-3|g
//! client.gauge_delta("queue", 2.0)?;                 // api.queue:+2|g
//! client.send(Metric::count("hits", 1).sample_rate(0.1))?; // sent 1 time in 10, |@0.1
//! let _guard = client.timer("handler");              // api.handler:<ms>|ms on drop
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Shape
//! The calling thread validates the metric, formats its line into a fixed 256-byte slot
//! on its stack and pushes the slot into a volley MPSC ring ([`crate::ring`]) with the
//! configured [`OverflowPolicy`](crate::ring::OverflowPolicy) (default DropNewest: a
//! full queue refuses the metric with [`MetricError::QueueFull`] and counts it). No lock,
//! no allocation once warm, no system call.
//!
//! A background thread drains the ring, optionally aggregates (counters summed, gauges
//! last value, sets de-duplicated per flush window), and packs lines into datagrams of at
//! most `max_payload` bytes, never splitting a line. It sends when a datagram is full,
//! every `flush_interval`, on [`Client::flush`], and when the last clone of the client
//! is dropped (shutdown goes by flag, not through the queue, so it works on a full one).
//!
//! # Validation
//! Names, tag keys and values holding `:` `|` `@` `#` `,` or a newline (and `=` in
//! Telegraf tags) are refused with [`MetricError::ReservedByte`], or replaced by `_` with
//! [`ClientBuilder::sanitize`]. NaN and infinities are refused. What a flavour cannot
//! express (an `h` or `d` for Etsy, a gauge delta for DogStatsD, `|T` outside DogStatsD)
//! is refused with [`MetricError::Unsupported`] rather than sent for the daemon to
//! miscount. No malformed line reaches the wire.
//!
//! # Wire format per flavour
//! | metric | Etsy | DogStatsD | Telegraf |
//! |---|---|---|---|
//! | counter | `n:1\|c\|@0.5` | same | same |
//! | gauge | `n:5\|g`, `n:+2\|g`, negative: `n:0\|g` + `n:-5\|g` | `n:-5\|g`, no deltas | as Etsy |
//! | timer | `n:12.5\|ms` | same | same |
//! | histogram, distribution | refused | `n:1\|h`, `n:1\|d` | `h`; `d` refused |
//! | set | `n:alice\|s` | same | same |
//! | tags | `\|#k:v,k2` (statsd ≥ 0.9 folds them into the key) | `\|#k:v,k2` | `n,k=v:1\|c` |
//! | `\|T`, `\|c:`, events, service checks | refused | yes | refused |

mod aggregate;
mod client;
mod error;
mod format;
mod metric;
mod packer;
mod parse;
mod report;
mod reserved;
mod worker;

#[cfg(test)]
mod tests;

pub use client::{
    Client, ClientBuilder, ClientStats, ErrorHandler, TimerGuard, DEFAULT_MAX_PAYLOAD,
};
pub use error::{BuildError, MetricError, Part, SendError};
pub use format::Flavour;
pub use metric::{AlertType, Event, Metric, Priority, ServiceCheck, Status, Tag};
pub use parse::{check_line, parse_line, Line, LineError, MetricLine};
pub use report::{PeriodicReporter, SocketStatsReporter};

/// Test hooks for the fuzz target and its smoke test: not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    /// Feeds arbitrary bytes through the line parser, the flavour checks and the
    /// aggregator; panics only if an invariant breaks.
    pub fn check_line_input(data: &[u8]) {
        use super::{check_line, parse_line, Flavour, Line};
        for flavour in [Flavour::Etsy, Flavour::DogStatsd, Flavour::Telegraf] {
            let _ = check_line(data, flavour);
        }
        if let Ok(Line::Metric(m)) = parse_line(data) {
            assert!(!m.name.is_empty());
            assert!(m.sample_rate > 0.0 && m.sample_rate <= 1.0);
            assert!(m.rest.is_empty() || m.rest[0] == b'|');
        }
        let mut agg = super::aggregate::Aggregator::new(Flavour::Etsy);
        for unit in data.split(|&b| b == 0) {
            let _ = agg.add(unit);
        }
        let mut packer = super::packer::Packer::new(64);
        agg.drain(&mut |unit| {
            // Whatever the aggregator emits parses again.
            for line in unit.split(|&b| b == b'\n') {
                assert!(
                    parse_line(line).is_ok(),
                    "{:?}",
                    String::from_utf8_lossy(line)
                );
            }
            packer.add(unit, &mut |d| assert!(d.oversized || d.payload.len() <= 64));
        });
    }
}
