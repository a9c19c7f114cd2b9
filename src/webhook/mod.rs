//! Webhook callbacks by the Standard Webhooks spec (v1.0.0): signed, retried, and nothing
//! lost silently.
//!
//! ```no_run
//! use std::time::Duration;
//! use volley::webhook::{Emitter, Endpoint, JsonLinesDeadLetters, RetrySchedule};
//!
//! let emitter = Emitter::builder()
//!     .endpoint(Endpoint::with_whsec("https://example.com/hooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?
//!         .event_types(["cpu.*"]))
//!     .retry_schedule(RetrySchedule::parse("0s,5s,5m")?)
//!     .dead_letters(JsonLinesDeadLetters::open("dead-letters.jsonl")?)
//!     .build()?;
//! emitter.emit("cpu.threshold", &serde_json::json!({"host": "a1", "load": 0.97}))?;
//! emitter.shutdown(Duration::from_secs(10)); // what is left goes to dead-letters.jsonl
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a receiver gets
//! A `POST` with the body `{"type":…,"timestamp":"<RFC 3339>","data":…}` and the headers
//! `webhook-id` (the same on every attempt and replay: the idempotency key),
//! `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret during a rotation).
//! [`verify`] is the receiver's check.
//!
//! # Delivery rules
//! Only a 2xx answer is a success. A 3xx is a failure (redirects are not followed), 410
//! disables the endpoint, 429/502/504 or a `Retry-After` pause that endpoint, and a
//! `webhook-delivery: abort-message` header stops retrying that message. Failures are
//! retried on a [`RetrySchedule`]; a per-endpoint circuit breaker ([`BreakerConfig`])
//! stops attempts to a receiver that keeps failing, so a dead receiver does not tie up
//! the workers the others need. Each endpoint runs at most `concurrency` attempts at once
//! (1 by default, which keeps emit order).
//!
//! # Nothing lost silently
//! A message whose schedule runs out, that the receiver aborts, that the emit queue's
//! [`OverflowPolicy`](crate::ring::OverflowPolicy) refuses or evicts, or that is still
//! pending at a shutdown's deadline goes to the [`DeadLetterSink`] with a
//! [`DeadReason`], and [`Emitter::replay`] sends dead letters again with their ids.
//!
//! The module's parts: [`signing`] (keys, signatures, verification), `event` (ids and
//! bodies), `policy` (schedule, response meaning, breaker), `scheduler` (the sans-IO
//! per-endpoint state, tested with synthetic time), `dead_letter` (sinks) and `emitter`
//! (threads and HTTP).

mod dead_letter;
mod emitter;
mod event;
mod policy;
mod scheduler;
pub mod signing;

pub use dead_letter::{
    parse_dead_letters, read_dead_letters, DeadLetter, DeadLetterSink, DeadReason,
    JsonLinesDeadLetters, MemoryDeadLetters, ReadDeadLettersError,
};
pub use emitter::{
    BuildError, EmitError, Emitter, EmitterBuilder, EmitterStats, Endpoint, ReplayReport,
    ShutdownReport,
};
pub use event::MessageId;
pub use policy::{BreakerConfig, BreakerState, RetrySchedule, ScheduleError};
pub use scheduler::EndpointStats;
pub use signing::{signature_header, verify, Secret, SecretError, VerifyError};
