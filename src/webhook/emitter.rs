//! The [`Emitter`]: `emit` serializes the event on the calling thread and pushes it into a
//! volley ring (its [`OverflowPolicy`] decides what a full queue does); a router thread
//! hands each event to the endpoints whose filter matches; worker threads run the attempts
//! the [`Scheduler`] releases, over one keep-alive `ureq` agent.
//!
//! # Implementation notes
//! * Workers share one mutex-protected scheduler and a condition variable: the lock is
//!   held to pick an attempt and to record its outcome, never across an HTTP request or a
//!   dead-letter sink call.
//! * A queued event that the ring evicts (DropOldest) is dropped inside the ring; its
//!   wrapper's `Drop` hands it to the dead-letter sink, so even an eviction is not lost.
//! * Per endpoint, concurrency 1 (the default) keeps order: the next message starts only
//!   when the current one is delivered or given up, retries included.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::dead_letter::{
    read_dead_letters, DeadLetter, DeadLetterSink, DeadReason, MemoryDeadLetters,
    ReadDeadLettersError,
};
use super::event::{unix_now, Event, IdGenerator, MessageId};
use super::policy::{classify, BreakerConfig, Failure, Outcome, RetrySchedule};
use super::scheduler::{Attempt, EndpointStats, Scheduler, SchedulerConfig};
use super::signing::{signature_header, Secret, SecretError};
use crate::ring::{
    mpsc, Consumer, ItemSize, MpscProducer, OverflowPolicy, PushError, RingConfig, RingStats,
};

/// How much of a response body is read (and discarded) so that the connection can be
/// reused; a receiver that sends more gets its connection closed instead.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// One receiver: its URL, the secrets to sign with, which event types it wants and how
/// many attempts may run at once.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: String,
    secrets: Vec<Secret>,
    event_types: Vec<String>,
    concurrency: usize,
}

impl Endpoint {
    /// An endpoint receiving every event type, signed with `secret`, one attempt at a time.
    pub fn new(url: impl Into<String>, secret: Secret) -> Self {
        Endpoint {
            url: url.into(),
            secrets: vec![secret],
            event_types: Vec::new(),
            concurrency: 1,
        }
    }

    /// Like [`new`](Self::new) with the secret in its `whsec_…` form.
    pub fn with_whsec(url: impl Into<String>, whsec: &str) -> Result<Self, SecretError> {
        Ok(Endpoint::new(url, Secret::parse(whsec)?))
    }

    /// Adds a secret: every message carries one signature per secret (secret rotation:
    /// add the new one, move receivers over, then drop the old one).
    pub fn also_sign_with(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Only these event types reach the endpoint; a pattern ending in `*` matches a
    /// prefix (`user.*`). The default (no filter) takes every type.
    pub fn event_types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// How many attempts may run at once for this endpoint. 1 (the default) delivers in
    /// emit order; more is faster and unordered.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty()
            || self.event_types.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => event_type.starts_with(prefix),
                None => p == event_type,
            })
    }
}

/// Why an emitter could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// No endpoint was added.
    NoEndpoint,
    /// An endpoint URL that is not an `http://…` or `https://…` URL with a host.
    BadUrl(String),
    /// The TLS root certificates given do not parse, or hold no certificate.
    Tls(String),
    /// A thread could not be started.
    Spawn(std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoEndpoint => f.write_str("a webhook emitter needs at least one endpoint"),
            BuildError::BadUrl(u) => {
                write!(f, "endpoint URL {u:?} must start with http:// or https://")
            }
            BuildError::Tls(e) => write!(f, "TLS root certificates: {e}"),
            BuildError::Spawn(e) => write!(f, "cannot start a webhook thread: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why `emit` did not queue an event.
#[derive(Debug)]
pub enum EmitError {
    /// The data is not JSON (or did not serialize); nothing was queued or dead-lettered:
    /// the caller still has it.
    Data(String),
    /// The queue's overflow policy refused the event (or the emitter is closing). It has
    /// been handed to the dead-letter sink under this id.
    Refused {
        /// The id the event was given.
        id: MessageId,
        /// The ring's reason.
        reason: String,
    },
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::Data(e) => write!(f, "event data is not JSON: {e}"),
            EmitError::Refused { id, reason } => {
                write!(
                    f,
                    "event {id} refused by the queue ({reason}); dead-lettered"
                )
            }
        }
    }
}

impl std::error::Error for EmitError {}

/// Counters of the emitter as a whole and of each endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitterStats {
    /// The emit queue (a volley MPSC ring): pushed, dropped by policy, length, …
    pub queue: RingStats,
    /// Events routed to endpoints (one per event, whatever the number of endpoints).
    pub routed: u64,
    /// Events no endpoint's filter wanted.
    pub unrouted: u64,
    /// Events the queue refused or evicted (all dead-lettered).
    pub refused: u64,
    /// Dead letters the sink failed to keep.
    pub dead_letter_errors: u64,
    /// Per endpoint, in the order they were added.
    pub endpoints: Vec<EndpointStats>,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Letters queued again (for as many endpoints as they name or match).
    pub queued: usize,
    /// Letters given up again at once (endpoint disabled or backlog full): they went
    /// back to the dead-letter sink.
    pub dead_lettered: usize,
    /// Letters naming an endpoint this emitter does not have, handed back.
    pub unknown_endpoint: Vec<DeadLetter>,
}

/// What a shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Everything was delivered or given up before the deadline.
    pub clean: bool,
    /// Messages handed to the dead-letter sink because the deadline passed.
    pub dead_lettered: usize,
}

/// Builds an [`Emitter`].
pub struct EmitterBuilder {
    endpoints: Vec<Endpoint>,
    timeout: Duration,
    schedule: RetrySchedule,
    breaker: BreakerConfig,
    queue_capacity: usize,
    policy: OverflowPolicy,
    workers: usize,
    max_backlog: usize,
    slow_down: Duration,
    max_retry_after: Duration,
    drop_deadline: Duration,
    sink: Arc<dyn DeadLetterSink>,
    tls_roots_pem: Option<Vec<u8>>,
}

impl fmt::Debug for EmitterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitterBuilder")
            .field("endpoints", &self.endpoints)
            .field("timeout", &self.timeout)
            .field("schedule", &self.schedule)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Default for EmitterBuilder {
    fn default() -> Self {
        EmitterBuilder {
            endpoints: Vec::new(),
            timeout: Duration::from_secs(15),
            schedule: RetrySchedule::default(),
            breaker: BreakerConfig::default(),
            queue_capacity: 4096,
            policy: OverflowPolicy::DropNewest,
            workers: 4,
            max_backlog: 100_000,
            slow_down: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(3600),
            drop_deadline: Duration::from_secs(5),
            sink: Arc::new(MemoryDeadLetters::new()),
            tls_roots_pem: None,
        }
    }
}

impl EmitterBuilder {
    /// Adds a receiver.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// The time limit of one attempt (default 15 s), applied to connecting and to each
    /// read and write of the request and response.
    ///
    /// Implementation note: these are fixed socket timeouts, set once per connection. A
    /// whole-request deadline would make the client re-set the socket timeout (a system
    /// call) before every read and write, which measured 1.5-2x slower on loopback. The
    /// cost: a receiver that trickles its answer a byte at a time can hold an attempt
    /// past the limit (bounded by the 64 KiB header and body limits).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// When attempts happen (default: the Standard Webhooks schedule, see
    /// [`RetrySchedule`]).
    pub fn retry_schedule(mut self, schedule: RetrySchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// The circuit breaker's threshold and cool-down (default 5 failures, 30 s).
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// Events the emit queue holds before its policy acts (default 4096).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// What `emit` does when the queue is full (default DropNewest). Refused and evicted
    /// events go to the dead-letter sink.
    pub fn overflow_policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Threads making HTTP requests (default 4): the most attempts in flight at once,
    /// over all endpoints.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Messages an endpoint may hold before they are attempted (default 100,000); more
    /// go to the dead-letter sink.
    pub fn max_backlog(mut self, max: usize) -> Self {
        self.max_backlog = max;
        self
    }

    /// How long a 429/502/504 without `Retry-After` pauses that endpoint (default 5 s),
    /// and the longest pause a `Retry-After` may ask for (default 1 h).
    pub fn slow_down(mut self, pause: Duration, max_retry_after: Duration) -> Self {
        self.slow_down = pause;
        self.max_retry_after = max_retry_after;
        self
    }

    /// Where undeliverable messages go (default: an in-memory sink nobody reads, so
    /// pass one you keep a handle on, or a [`JsonLinesDeadLetters`](super::JsonLinesDeadLetters)).
    pub fn dead_letters(mut self, sink: impl DeadLetterSink + 'static) -> Self {
        self.sink = Arc::new(sink);
        self
    }

    /// The shutdown deadline used when the emitter is dropped without
    /// [`Emitter::shutdown`] (default 5 s).
    pub fn drop_deadline(mut self, deadline: Duration) -> Self {
        self.drop_deadline = deadline;
        self
    }

    /// Trust these PEM certificates (a private CA, a self-signed receiver) for `https://`
    /// endpoints instead of the built-in Mozilla roots. Checked by [`build`](Self::build).
    pub fn tls_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_roots_pem = Some(pem.into());
        self
    }

    #[cfg(feature = "https")]
    fn tls_config(&self) -> Result<ureq::tls::TlsConfig, BuildError> {
        use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
        let builder = TlsConfig::builder();
        let Some(pem) = &self.tls_roots_pem else {
            return Ok(builder.build());
        };
        let mut certs = Vec::new();
        for item in parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(BuildError::Tls(e.to_string())),
            }
        }
        if certs.is_empty() {
            return Err(BuildError::Tls("no certificate in the PEM text".into()));
        }
        Ok(builder
            .root_certs(RootCerts::new_with_certs(&certs))
            .build())
    }

    /// Starts the router and worker threads.
    pub fn build(self) -> Result<Emitter, BuildError> {
        if self.endpoints.is_empty() {
            return Err(BuildError::NoEndpoint);
        }
        let valid = |url: &str| {
            (url.starts_with("http://") || url.starts_with("https://"))
                && url
                    .parse::<ureq::http::Uri>()
                    .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()))
        };
        if let Some(bad) = self.endpoints.iter().find(|e| !valid(&e.url)) {
            return Err(BuildError::BadUrl(bad.url.clone()));
        }
        #[cfg(not(feature = "https"))]
        if let Some(e) = self
            .endpoints
            .iter()
            .find(|e| e.url.starts_with("https://"))
        {
            return Err(BuildError::Tls(format!(
                "{}: volley was built without its `https` feature",
                e.url
            )));
        }
        let config = ureq::Agent::config_builder();
        #[cfg(feature = "https")]
        let config = config.tls_config(self.tls_config()?);
        let agent: ureq::Agent = config
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(self.timeout))
            .timeout_per_read(Some(self.timeout))
            .timeout_per_write(Some(self.timeout))
            .max_idle_connections_per_host(self.workers.max(4))
            .max_idle_connections(self.workers.max(4) * self.endpoints.len().max(1))
            .user_agent(concat!("volley-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let scheduler = Scheduler::new(
            SchedulerConfig {
                schedule: self.schedule,
                breaker: self.breaker,
                max_backlog: self.max_backlog,
                slow_down: self.slow_down,
                max_retry_after: self.max_retry_after,
            },
            &self
                .endpoints
                .iter()
                .map(|e| (e.url.clone(), e.concurrency))
                .collect::<Vec<_>>(),
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                scheduler,
                ready: Default::default(),
                routed: 0,
                unrouted: 0,
                letters_in_hand: 0,
                router_done: false,
                stopped: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            endpoints: self.endpoints,
            sink: self.sink,
            agent,
            refused: Default::default(),
            dead_letter_errors: Default::default(),
        });
        let (producer, consumer) =
            mpsc::<Queued>(self.queue_capacity, RingConfig::with_policy(self.policy));
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(BuildError::Spawn)
        };
        let router = {
            let shared = shared.clone();
            spawn(
                "volley-webhook-router".into(),
                Box::new(move || route(&shared, consumer)),
            )?
        };
        let mut workers = Vec::with_capacity(self.workers);
        for i in 0..self.workers {
            let shared = shared.clone();
            workers.push(spawn(
                format!("volley-webhook-{i}"),
                Box::new(move || work(&shared)),
            )?);
        }
        Ok(Emitter {
            producer: Some(producer),
            shared,
            ids: IdGenerator::new(),
            router: Some(router),
            workers,
            drop_deadline: self.drop_deadline,
        })
    }
}

/// Sends events to webhook endpoints, signed by the Standard Webhooks spec, retried on a
/// schedule, with nothing lost silently: what cannot be delivered goes to a dead-letter
/// sink.
///
/// ```no_run
/// use std::time::Duration;
/// use volley::webhook::{Emitter, Endpoint, MemoryDeadLetters};
///
/// let dead = MemoryDeadLetters::new();
/// let emitter = Emitter::builder()
///     .endpoint(Endpoint::with_whsec("https://example.com/hooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
///     .dead_letters(dead.clone())
///     .build()?;
/// let id = emitter.emit("cpu.threshold", &serde_json::json!({"host": "a1", "load": 0.97}))?;
/// println!("queued {id}");
/// let report = emitter.shutdown(Duration::from_secs(10));
/// assert_eq!(report.dead_lettered, dead.len());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Emitter {
    producer: Option<MpscProducer<Queued>>,
    shared: Arc<Shared>,
    ids: IdGenerator,
    router: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    drop_deadline: Duration,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("endpoints", &self.shared.endpoints)
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Workers wait here for an attempt to become ready.
    work: Condvar,
    /// `flush` and `shutdown` wait here for the scheduler to become idle.
    progress: Condvar,
    endpoints: Vec<Endpoint>,
    sink: Arc<dyn DeadLetterSink>,
    agent: ureq::Agent,
    refused: AtomicU64,
    dead_letter_errors: AtomicU64,
}

struct State {
    scheduler: Scheduler,
    /// Attempts already released by the scheduler, for the next free worker: a worker
    /// that takes an attempt releases one more here and wakes one sleeper, so sleepers
    /// are woken only when there is work for them.
    ready: std::collections::VecDeque<Attempt>,
    routed: u64,
    unrouted: u64,
    /// Dead letters taken out of the scheduler and not yet accepted by the sink, which is
    /// called without the lock held (it may write a file or run user code): `flush`
    /// counts them as unsettled, so it returns only once the sink has them.
    letters_in_hand: usize,
    router_done: bool,
    stopped: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dead_letter(&self, letters: impl IntoIterator<Item = DeadLetter>) {
        for letter in letters {
            if self.sink.accept(letter).is_err() {
                self.dead_letter_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands `letters`, just taken out of the scheduler under `state`, to the sink with
    /// the lock released, keeping them counted in [`State::letters_in_hand`] meanwhile.
    fn dead_letter_unlocked<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        letters: Vec<DeadLetter>,
    ) -> MutexGuard<'a, State> {
        if letters.is_empty() {
            return state;
        }
        let n = letters.len();
        state.letters_in_hand += n;
        drop(state);
        self.dead_letter(letters);
        let mut state = self.lock();
        state.letters_in_hand -= n;
        self.progress.notify_all();
        state
    }

    fn refused(&self, event: &Event, reason: DeadReason) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.dead_letter([DeadLetter {
            id: event.id.as_str().to_owned(),
            event_type: event.event_type.clone(),
            body: event.body.clone(),
            endpoint: None,
            reason,
            attempts: 0,
            last_error: None,
            dead_at: unix_now(),
        }]);
    }
}

/// An event in the emit queue. If the ring drops it (DropOldest eviction), `Drop` hands it
/// to the dead-letter sink.
struct Queued {
    event: Option<Arc<Event>>,
    shared: Arc<Shared>,
}

impl Queued {
    fn take(mut self) -> Option<Arc<Event>> {
        self.event.take()
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.shared.refused(&event, DeadReason::Evicted);
        }
    }
}

impl ItemSize for Queued {
    fn item_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.event.as_ref().map_or(0, |e| e.body.len())
    }
}

impl Emitter {
    /// A builder with the defaults.
    pub fn builder() -> EmitterBuilder {
        EmitterBuilder::default()
    }

    /// Queues an event of type `event_type` whose `data` is serialized to JSON here, on the
    /// calling thread. Returns its id (the `webhook-id`) at once; it never waits longer
    /// than the queue's overflow policy allows. A refused event is dead-lettered and
    /// reported as [`EmitError::Refused`].
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        event_type: &str,
        data: &T,
    ) -> Result<MessageId, EmitError> {
        let id = self.ids.next_id();
        let event = Event::build(id, event_type, SystemTime::now(), |out| {
            serde_json::to_writer(out, data).map_err(|e| e.to_string())
        })
        .map_err(EmitError::Data)?;
        self.enqueue(event)
    }

    /// Like [`emit`](Self::emit) with `data` already JSON text (checked, sent as is).
    pub fn emit_json(&self, event_type: &str, data_json: &str) -> Result<MessageId, EmitError> {
        serde_json::from_str::<serde::de::IgnoredAny>(data_json)
            .map_err(|e| EmitError::Data(e.to_string()))?;
        let id = self.ids.next_id();
        let event = Event::build(id, event_type, SystemTime::now(), |out| {
            out.extend_from_slice(data_json.trim().as_bytes());
            Ok(())
        })
        .map_err(EmitError::Data)?;
        self.enqueue(event)
    }

    fn enqueue(&self, event: Event) -> Result<MessageId, EmitError> {
        let id = event.id.clone();
        let queued = Queued {
            event: Some(Arc::new(event)),
            shared: self.shared.clone(),
        };
        let Some(producer) = &self.producer else {
            // Dropping it dead-letters it.
            drop(queued);
            return Err(EmitError::Refused {
                id,
                reason: "emitter shut down".into(),
            });
        };
        match producer.push(queued) {
            Ok(()) => Ok(id),
            Err(e) => {
                let reason = e.to_string();
                let refused = match e {
                    PushError::Full(q)
                    | PushError::Timeout(q)
                    | PushError::BufferFull(q)
                    | PushError::Closed(q) => q,
                };
                if let Some(event) = refused.take() {
                    self.shared.refused(&event, DeadReason::QueueRefused);
                }
                Err(EmitError::Refused { id, reason })
            }
        }
    }

    /// Sends dead letters again, with their original id and body (receivers that
    /// de-duplicate on `webhook-id` see each message once). A letter naming an endpoint
    /// goes to that endpoint only; one refused before routing goes to every endpoint
    /// whose filter matches. Bypasses the emit queue.
    pub fn replay(&self, letters: impl IntoIterator<Item = DeadLetter>) -> ReplayReport {
        let mut report = ReplayReport::default();
        let mut again = Vec::new();
        let mut state = self.shared.lock();
        for letter in letters {
            let targets: Vec<usize> = match &letter.endpoint {
                Some(url) => match self.shared.endpoints.iter().position(|e| &e.url == url) {
                    Some(i) => vec![i],
                    None => {
                        report.unknown_endpoint.push(letter);
                        continue;
                    }
                },
                None => self.matching(&letter.event_type).collect(),
            };
            let event = Arc::new(Event {
                id: MessageId(letter.id),
                event_type: letter.event_type,
                body: letter.body,
            });
            for i in targets {
                match state.scheduler.enqueue(i, event.clone()) {
                    None => report.queued += 1,
                    Some(l) => again.push(l),
                }
            }
        }
        self.shared.work.notify_all();
        report.dead_lettered = again.len();
        drop(self.shared.dead_letter_unlocked(state, again));
        report
    }

    /// Reads a JSON-lines dead-letter file and [`replay`](Self::replay)s it. The file is
    /// left as it is; remove it once the replay is delivered.
    pub fn replay_file(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<ReplayReport, ReadDeadLettersError> {
        Ok(self.replay(read_dead_letters(path)?))
    }

    /// Re-enables an endpoint that a 410 disabled. Returns whether the URL is known.
    pub fn enable_endpoint(&self, url: &str) -> bool {
        match self.shared.endpoints.iter().position(|e| e.url == url) {
            Some(i) => {
                self.shared.lock().scheduler.enable(i);
                true
            }
            None => false,
        }
    }

    fn matching<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.shared
            .endpoints
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.wants(event_type))
            .map(|(i, _)| i)
    }

    /// The counters now.
    pub fn stats(&self) -> EmitterStats {
        let queue = self
            .producer
            .as_ref()
            .map(|p| p.stats())
            .unwrap_or_default();
        let state = self.shared.lock();
        EmitterStats {
            queue,
            routed: state.routed,
            unrouted: state.unrouted,
            refused: self.shared.refused.load(Ordering::Relaxed),
            dead_letter_errors: self.shared.dead_letter_errors.load(Ordering::Relaxed),
            endpoints: (0..self.shared.endpoints.len())
                .map(|i| state.scheduler.stats(i))
                .collect(),
        }
    }

    /// Waits until every emitted event has been delivered or given up, up to `timeout`.
    /// Returns whether that happened.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            let queue = self
                .producer
                .as_ref()
                .map(|p| p.stats())
                .unwrap_or_default();
            // Everything pushed was routed (or evicted), and nothing waits anywhere.
            let all_routed = queue.pushed == state.routed + state.unrouted + queue.dropped_oldest;
            if all_routed && state.scheduler.is_idle() && state.letters_in_hand == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // The ring's counters move outside the lock: look again every few ms.
            let slice = (deadline - now).min(Duration::from_millis(5));
            state = self
                .shared
                .progress
                .wait_timeout(state, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops taking events, keeps delivering until everything is delivered or given up
    /// or `deadline` passes, then hands whatever is left (queued, waiting for a retry, or
    /// still in flight) to the dead-letter sink.
    pub fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.close(deadline)
    }

    fn close(&mut self, deadline: Duration) -> ShutdownReport {
        let until = Instant::now() + deadline;
        // Closing the ring lets the router drain it and finish.
        self.producer = None;
        if let Some(router) = self.router.take() {
            let _ = router.join();
        }
        let mut state = self.shared.lock();
        loop {
            if state.scheduler.is_idle() {
                break;
            }
            let now = Instant::now();
            if now >= until {
                break;
            }
            state = self
                .shared
                .progress
                .wait_timeout(state, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let clean = state.scheduler.is_idle();
        let letters = state.scheduler.drain(DeadReason::Shutdown);
        state.ready.clear();
        state.stopped = true;
        drop(state);
        self.shared.work.notify_all();
        let report = ShutdownReport {
            clean,
            dead_lettered: letters.len(),
        };
        self.shared.dead_letter(letters);
        // Idle workers exit at once; one still inside a request (past the deadline) is
        // left to finish on its own within the request timeout, its result ignored.
        for worker in self.workers.drain(..) {
            if clean {
                let _ = worker.join();
            }
        }
        report
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        if self.router.is_some() {
            self.close(self.drop_deadline);
        }
    }
}

/// The router thread: takes events from the ring and gives each to the endpoints that
/// want it.
fn route(shared: &Shared, mut queue: Consumer<Queued>) {
    let mut batch = Vec::with_capacity(256);
    let mut letters = Vec::new();
    loop {
        match queue.pop() {
            Ok(first) => batch.push(first),
            Err(_closed) => break,
        }
        queue.pop_into(&mut batch, 255);
        {
            let mut state = shared.lock();
            for queued in batch.drain(..) {
                let Some(event) = queued.take() else { continue };
                let mut wanted = false;
                for (i, endpoint) in shared.endpoints.iter().enumerate() {
                    if endpoint.wants(&event.event_type) {
                        wanted = true;
                        if let Some(letter) = state.scheduler.enqueue(i, event.clone()) {
                            letters.push(letter);
                        }
                    }
                }
                if wanted {
                    state.routed += 1;
                } else {
                    state.unrouted += 1;
                }
            }
            state.letters_in_hand += letters.len();
        }
        // One worker is enough: each worker that takes an attempt wakes another if more
        // are ready.
        shared.work.notify_one();
        shared.progress.notify_all();
        if !letters.is_empty() {
            let n = letters.len();
            shared.dead_letter(letters.drain(..));
            shared.lock().letters_in_hand -= n;
            shared.progress.notify_all();
        }
    }
    shared.lock().router_done = true;
    shared.progress.notify_all();
}

/// A worker thread: runs whatever attempt the scheduler releases, records its outcome.
fn work(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.stopped {
            return;
        }
        let now = Instant::now();
        let next = match state.ready.pop_front() {
            Some(a) => Some(a),
            None => state.scheduler.next_attempt(now),
        };
        let Some(attempt) = next else {
            let wake = state.scheduler.next_wake(now);
            state = match wake {
                Some(t) => {
                    shared
                        .work
                        .wait_timeout(state, t.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => shared.work.wait(state).unwrap_or_else(|p| p.into_inner()),
            };
            continue;
        };
        let more = state.ready.is_empty() && {
            match state.scheduler.next_attempt(now) {
                Some(another) => {
                    state.ready.push_back(another);
                    true
                }
                None => false,
            }
        };
        drop(state);
        if more {
            shared.work.notify_one();
        }
        let started = Instant::now();
        let outcome = deliver(shared, &attempt);
        let latency = started.elapsed();
        state = shared.lock();
        if state.stopped {
            return;
        }
        let letters = state
            .scheduler
            .complete(&attempt, outcome, latency, Instant::now());
        let idle = state.scheduler.is_idle();
        state = shared.dead_letter_unlocked(state, letters);
        if idle {
            shared.progress.notify_all();
        }
    }
}

/// One HTTP attempt.
fn deliver(shared: &Shared, attempt: &Attempt) -> Outcome {
    let endpoint = &shared.endpoints[attempt.endpoint];
    let event = &attempt.event;
    let timestamp = unix_now();
    let signature = signature_header(
        &endpoint.secrets,
        event.id.as_str(),
        timestamp,
        event.body.as_bytes(),
    );
    let result = shared
        .agent
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", event.id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .send(event.body.as_bytes());
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let retry_after = header("retry-after");
            let delivery = header("webhook-delivery");
            // Read the body to its end so that the connection goes back to the pool.
            let mut sink = Vec::new();
            let _ = response
                .body_mut()
                .as_reader()
                .take(MAX_RESPONSE_BODY)
                .read_to_end(&mut sink);
            classify(status, retry_after.as_deref(), delivery.as_deref())
        }
        Err(e) => Outcome::Failed(Failure::transport(describe(&e))),
    }
}

fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timeout".into(),
        ureq::Error::Io(e) => format!("i/o: {e}"),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}
