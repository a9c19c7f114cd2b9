//! Which attempt runs next, for every endpoint: the backlog, the retries waiting for their
//! time, the concurrency limit, slow-downs and the circuit breaker. A sans-IO state
//! machine: every entry point takes `now`, nothing here touches a socket, a thread or the
//! clock, so the rules are tested with synthetic time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dead_letter::{DeadLetter, DeadReason};
use super::event::{splitmix, unix_now, Event};
use super::policy::{Breaker, BreakerConfig, BreakerState, Outcome, RetrySchedule};

/// The scheduler's settings, shared by every endpoint.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerConfig {
    pub(crate) schedule: RetrySchedule,
    pub(crate) breaker: BreakerConfig,
    /// Messages an endpoint may hold that have not started (beyond that: dead letter).
    pub(crate) max_backlog: usize,
    /// How long a 429/502/504 without `Retry-After` pauses the endpoint.
    pub(crate) slow_down: Duration,
    /// The longest pause a `Retry-After` may impose.
    pub(crate) max_retry_after: Duration,
}

/// One attempt handed to a worker.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) endpoint: usize,
    pub(crate) event: Arc<Event>,
    /// 1-based.
    pub(crate) number: u32,
    token: u64,
}

#[derive(Debug)]
struct Started {
    token: u64,
    event: Arc<Event>,
    number: u32,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Waiting {
    due: Instant,
    event: Arc<Event>,
    attempts_done: u32,
    last_error: Option<String>,
}

/// Counters and state of one endpoint, as [`Emitter::stats`](super::Emitter::stats)
/// reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// The endpoint's URL.
    pub url: String,
    /// Messages delivered (a 2xx answer). Each message counts once.
    pub delivered: u64,
    /// Attempts made, first tries and retries.
    pub attempts: u64,
    /// Attempts that were retries (attempt 2 and later).
    pub retried: u64,
    /// Attempts that failed (non-2xx, timeout, connection error).
    pub failed: u64,
    /// Messages handed to the dead-letter sink for this endpoint.
    pub dead_lettered: u64,
    /// Attempts running now.
    pub in_flight: u64,
    /// Messages waiting their turn (not yet attempted).
    pub queued: u64,
    /// Messages waiting for a retry.
    pub waiting_retry: u64,
    /// The circuit breaker's state now.
    pub breaker: BreakerState,
    /// How many times the breaker opened.
    pub breaker_opened: u64,
    /// Whether a 410 disabled the endpoint.
    pub disabled: bool,
    /// How many times the receiver asked to slow down (429/502/504/`Retry-After`).
    pub slowed_down: u64,
    /// Latency of the last delivered attempt (request to response).
    pub latency_last: Duration,
    /// Mean latency of delivered attempts.
    pub latency_mean: Duration,
    /// Highest latency of a delivered attempt.
    pub latency_max: Duration,
}

#[derive(Debug)]
struct EndpointState {
    concurrency: usize,
    pending: VecDeque<Arc<Event>>,
    waiting: Vec<Waiting>,
    in_flight: Vec<Started>,
    disabled: bool,
    paused_until: Option<Instant>,
    breaker: Breaker,
    stats: EndpointStats,
    latency_total: Duration,
}

impl EndpointState {
    fn active(&self) -> usize {
        self.in_flight.len() + self.waiting.len()
    }

    fn has_work(&self) -> bool {
        !self.pending.is_empty() || !self.waiting.is_empty()
    }

    fn letter(
        &mut self,
        event: &Event,
        reason: DeadReason,
        attempts: u32,
        last_error: Option<String>,
    ) -> DeadLetter {
        self.stats.dead_lettered += 1;
        DeadLetter {
            id: event.id.as_str().to_owned(),
            event_type: event.event_type.clone(),
            body: event.body.clone(),
            endpoint: Some(self.stats.url.clone()),
            reason,
            attempts,
            last_error,
            dead_at: unix_now(),
        }
    }
}

/// The delivery state of every endpoint.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: SchedulerConfig,
    endpoints: Vec<EndpointState>,
    cursor: usize,
    next_token: u64,
    random: u64,
}

impl Scheduler {
    /// `endpoints`: (url, concurrency limit) of each, in index order.
    pub(crate) fn new(config: SchedulerConfig, endpoints: &[(String, usize)]) -> Self {
        let endpoints = endpoints
            .iter()
            .map(|(url, concurrency)| EndpointState {
                concurrency: (*concurrency).max(1),
                pending: VecDeque::new(),
                waiting: Vec::new(),
                in_flight: Vec::new(),
                disabled: false,
                paused_until: None,
                breaker: Breaker::new(config.breaker),
                stats: EndpointStats {
                    url: url.clone(),
                    ..EndpointStats::default()
                },
                latency_total: Duration::ZERO,
            })
            .collect();
        Scheduler {
            config,
            endpoints,
            cursor: 0,
            next_token: 0,
            random: super::event::seed(),
        }
    }

    fn random(&mut self) -> u64 {
        self.random = splitmix(self.random);
        self.random
    }

    /// Adds `event` to endpoint `endpoint`'s backlog, or hands it back as a dead letter
    /// (endpoint disabled, backlog full).
    pub(crate) fn enqueue(&mut self, endpoint: usize, event: Arc<Event>) -> Option<DeadLetter> {
        let max_backlog = self.config.max_backlog;
        let ep = &mut self.endpoints[endpoint];
        if ep.disabled {
            return Some(ep.letter(&event, DeadReason::EndpointDisabled, 0, None));
        }
        if ep.pending.len() >= max_backlog {
            return Some(ep.letter(&event, DeadReason::BacklogFull, 0, None));
        }
        ep.pending.push_back(event);
        None
    }

    /// The next attempt that may start now, if any. Endpoints take turns.
    pub(crate) fn next_attempt(&mut self, now: Instant) -> Option<Attempt> {
        let n = self.endpoints.len();
        for step in 0..n {
            let index = (self.cursor + step) % n;
            if let Some(attempt) = self.next_attempt_of(index, now) {
                self.cursor = (index + 1) % n;
                return Some(attempt);
            }
        }
        None
    }

    fn next_attempt_of(&mut self, index: usize, now: Instant) -> Option<Attempt> {
        let first_delay = self.config.schedule.delay_before(1, 0).unwrap_or_default();
        let random = self.random();
        let first_delay = if first_delay.is_zero() {
            first_delay
        } else {
            self.config
                .schedule
                .delay_before(1, random)
                .unwrap_or_default()
        };
        let ep = &mut self.endpoints[index];
        if ep.disabled || ep.paused_until.is_some_and(|t| now < t) {
            return None;
        }
        // A schedule whose first delay is not zero: a message taken up waits that long.
        while !first_delay.is_zero() && !ep.pending.is_empty() && ep.active() < ep.concurrency {
            let event = ep.pending.pop_front()?;
            ep.waiting.push(Waiting {
                due: now + first_delay,
                event,
                attempts_done: 0,
                last_error: None,
            });
        }
        let due = ep
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| w.due <= now)
            .min_by_key(|(_, w)| w.due)
            .map(|(i, _)| i);
        let can_start_new = !ep.pending.is_empty() && ep.active() < ep.concurrency;
        if due.is_none() && !can_start_new {
            return None;
        }
        if !ep.breaker.allows(now) {
            return None;
        }
        ep.breaker.on_start();
        let (event, number, last_error) = match due {
            Some(i) => {
                let w = ep.waiting.swap_remove(i);
                (w.event, w.attempts_done + 1, w.last_error)
            }
            None => (ep.pending.pop_front()?, 1, None),
        };
        self.next_token += 1;
        let token = self.next_token;
        ep.in_flight.push(Started {
            token,
            event: event.clone(),
            number,
            last_error,
        });
        Some(Attempt {
            endpoint: index,
            event,
            number,
            token,
        })
    }

    /// Records how `attempt` ended; returns the dead letters it produced. An attempt
    /// unknown here (drained by a shutdown meanwhile) is ignored.
    pub(crate) fn complete(
        &mut self,
        attempt: &Attempt,
        outcome: Outcome,
        latency: Duration,
        now: Instant,
    ) -> Vec<DeadLetter> {
        let attempts_in_schedule = self.config.schedule.attempts();
        let slow_down = self.config.slow_down;
        let max_retry_after = self.config.max_retry_after;
        let random = self.random();
        let retry_delay = self
            .config
            .schedule
            .delay_before(attempt.number + 1, random);
        let ep = &mut self.endpoints[attempt.endpoint];
        let Some(position) = ep.in_flight.iter().position(|s| s.token == attempt.token) else {
            return Vec::new();
        };
        let started = ep.in_flight.swap_remove(position);
        ep.stats.attempts += 1;
        if started.number > 1 {
            ep.stats.retried += 1;
        }
        let mut letters = Vec::new();
        match outcome {
            Outcome::Delivered => {
                ep.breaker.on_success();
                ep.stats.delivered += 1;
                ep.stats.latency_last = latency;
                ep.stats.latency_max = ep.stats.latency_max.max(latency);
                ep.latency_total += latency;
                ep.stats.latency_mean = Duration::from_nanos(
                    (ep.latency_total.as_nanos() / u128::from(ep.stats.delivered.max(1))) as u64,
                );
            }
            Outcome::Gone => {
                ep.breaker.on_success();
                ep.stats.failed += 1;
                ep.disabled = true;
                ep.stats.disabled = true;
                let error = Some("HTTP 410".to_owned());
                letters.push(ep.letter(
                    &started.event,
                    DeadReason::EndpointDisabled,
                    started.number,
                    error.clone(),
                ));
                for w in std::mem::take(&mut ep.waiting) {
                    letters.push(ep.letter(
                        &w.event,
                        DeadReason::EndpointDisabled,
                        w.attempts_done,
                        w.last_error,
                    ));
                }
                for event in std::mem::take(&mut ep.pending) {
                    letters.push(ep.letter(&event, DeadReason::EndpointDisabled, 0, None));
                }
            }
            Outcome::Abort { status } => {
                // The receiver answered on purpose: alive, but not a success.
                ep.breaker.on_failure(false, now);
                ep.stats.failed += 1;
                letters.push(ep.letter(
                    &started.event,
                    DeadReason::Aborted,
                    started.number,
                    Some(format!("HTTP {status}, abort-message")),
                ));
            }
            Outcome::Failed(failure) => {
                ep.breaker.on_failure(failure.trips_breaker, now);
                ep.stats.failed += 1;
                let retry_after = failure.retry_after.map(|d| d.min(max_retry_after));
                if failure.slow_down {
                    ep.stats.slowed_down += 1;
                    let until = now + retry_after.unwrap_or(slow_down);
                    ep.paused_until = Some(ep.paused_until.map_or(until, |t| t.max(until)));
                }
                if ep.disabled {
                    letters.push(ep.letter(
                        &started.event,
                        DeadReason::EndpointDisabled,
                        started.number,
                        Some(failure.reason),
                    ));
                } else if started.number >= attempts_in_schedule {
                    letters.push(ep.letter(
                        &started.event,
                        DeadReason::Exhausted,
                        started.number,
                        Some(failure.reason),
                    ));
                } else {
                    let delay = retry_delay.unwrap_or_default();
                    let delay = retry_after.map_or(delay, |ra| delay.max(ra));
                    ep.waiting.push(Waiting {
                        due: now + delay,
                        event: started.event,
                        attempts_done: started.number,
                        last_error: Some(failure.reason),
                    });
                }
            }
        }
        letters
    }

    /// The earliest future instant at which something may become ready (a retry falls
    /// due, a pause or an open breaker ends), if any.
    pub(crate) fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        };
        for ep in self
            .endpoints
            .iter()
            .filter(|e| !e.disabled && e.has_work())
        {
            ep.waiting.iter().for_each(|w| consider(w.due));
            if let Some(t) = ep.paused_until {
                consider(t);
            }
            if let Some(t) = ep.breaker.open_until() {
                consider(t);
            }
        }
        earliest
    }

    /// Nothing queued, waiting or in flight anywhere.
    pub(crate) fn is_idle(&self) -> bool {
        self.endpoints
            .iter()
            .all(|e| e.pending.is_empty() && e.waiting.is_empty() && e.in_flight.is_empty())
    }

    /// Gives up everything queued, waiting and in flight, as dead letters with `reason`.
    /// Attempts still running are forgotten: their completion is ignored.
    pub(crate) fn drain(&mut self, reason: DeadReason) -> Vec<DeadLetter> {
        let mut letters = Vec::new();
        for ep in &mut self.endpoints {
            for s in std::mem::take(&mut ep.in_flight) {
                ep.breaker.on_abandon();
                let attempts = s.number.saturating_sub(1);
                letters.push(ep.letter(&s.event, reason, attempts, s.last_error));
            }
            for w in std::mem::take(&mut ep.waiting) {
                letters.push(ep.letter(&w.event, reason, w.attempts_done, w.last_error));
            }
            for event in std::mem::take(&mut ep.pending) {
                letters.push(ep.letter(&event, reason, 0, None));
            }
        }
        letters
    }

    /// Re-enables an endpoint a 410 disabled.
    pub(crate) fn enable(&mut self, endpoint: usize) {
        let ep = &mut self.endpoints[endpoint];
        ep.disabled = false;
        ep.stats.disabled = false;
    }

    pub(crate) fn stats(&self, endpoint: usize) -> EndpointStats {
        let ep = &self.endpoints[endpoint];
        EndpointStats {
            in_flight: ep.in_flight.len() as u64,
            queued: ep.pending.len() as u64,
            waiting_retry: ep.waiting.len() as u64,
            breaker: ep.breaker.state(),
            breaker_opened: ep.breaker.opened,
            ..ep.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::event::MessageId;
    use crate::webhook::policy::Failure;
    use std::time::UNIX_EPOCH;

    fn event(n: u32) -> Arc<Event> {
        Arc::new(Event::new(
            MessageId(format!("msg_{n}")),
            "t",
            &n.to_string(),
            UNIX_EPOCH,
        ))
    }

    fn config(schedule: &str) -> SchedulerConfig {
        SchedulerConfig {
            schedule: RetrySchedule::parse(schedule)
                .unwrap()
                .with_jitter(0.0)
                .unwrap(),
            breaker: BreakerConfig {
                failure_threshold: 3,
                cool_down: Duration::from_secs(60),
            },
            max_backlog: 100,
            slow_down: Duration::from_secs(7),
            max_retry_after: Duration::from_secs(600),
        }
    }

    fn failed(status: u16) -> Outcome {
        crate::webhook::policy::classify(status, None, None)
    }

    fn endpoints(concurrency: &[usize]) -> Vec<(String, usize)> {
        concurrency
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("http://e{i}"), *c))
            .collect()
    }

    #[test]
    fn concurrency_one_is_ordered_and_retries_block_the_line() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(config("0s,10s,20s"), &endpoints(&[1]));
        for n in 0..3 {
            assert!(s.enqueue(0, event(n)).is_none());
        }
        let a = s.next_attempt(t0).unwrap();
        assert_eq!((a.event.id.as_str(), a.number), ("msg_0", 1));
        assert!(s.next_attempt(t0).is_none(), "one at a time");
        assert!(s.complete(&a, failed(500), Duration::ZERO, t0).is_empty());
        // msg_1 may not overtake msg_0 while it waits for its retry.
        assert!(s.next_attempt(t0 + Duration::from_secs(9)).is_none());
        assert_eq!(s.next_wake(t0), Some(t0 + Duration::from_secs(10)));
        let t1 = t0 + Duration::from_secs(10);
        let a = s.next_attempt(t1).unwrap();
        assert_eq!((a.event.id.as_str(), a.number), ("msg_0", 2));
        s.complete(&a, Outcome::Delivered, Duration::from_millis(3), t1);
        let b = s.next_attempt(t1).unwrap();
        assert_eq!(b.event.id.as_str(), "msg_1");
        let st = s.stats(0);
        assert_eq!(
            (
                st.delivered,
                st.attempts,
                st.retried,
                st.failed,
                st.in_flight,
                st.queued
            ),
            (1, 2, 1, 1, 1, 1)
        );
        assert_eq!(st.latency_last, Duration::from_millis(3));
    }

    #[test]
    fn exhausted_schedule_dead_letters_with_the_last_error() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(config("0s,1s"), &endpoints(&[1]));
        s.enqueue(0, event(7));
        let a = s.next_attempt(t0).unwrap();
        s.complete(&a, failed(503), Duration::ZERO, t0);
        let t1 = t0 + Duration::from_secs(1);
        let a = s.next_attempt(t1).unwrap();
        let letters = s.complete(&a, failed(500), Duration::ZERO, t1);
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].reason, DeadReason::Exhausted);
        assert_eq!(letters[0].attempts, 2);
        assert_eq!(letters[0].last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(letters[0].endpoint.as_deref(), Some("http://e0"));
        assert!(s.is_idle());
        assert_eq!(s.stats(0).dead_lettered, 1);
    }

    #[test]
    fn gone_disables_and_dead_letters_everything_of_that_endpoint_only() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(config("0s"), &endpoints(&[2, 1]));
        for n in 0..4 {
            s.enqueue(0, event(n));
        }
        s.enqueue(1, event(9));
        let a = s.next_attempt(t0).unwrap();
        let other = s.next_attempt(t0).unwrap();
        let b = s.next_attempt(t0).unwrap();
        assert_eq!((a.endpoint, other.endpoint, b.endpoint), (0, 1, 0));
        let letters = s.complete(&a, Outcome::Gone, Duration::ZERO, t0);
        // a itself and the two never started; b is still in flight.
        assert_eq!(letters.len(), 3);
        assert!(letters
            .iter()
            .all(|l| l.reason == DeadReason::EndpointDisabled));
        let late = s.complete(&b, failed(500), Duration::ZERO, t0);
        assert_eq!(late[0].reason, DeadReason::EndpointDisabled);
        assert_eq!(
            s.enqueue(0, event(5)).unwrap().reason,
            DeadReason::EndpointDisabled
        );
        assert!(s.stats(0).disabled);
        assert!(s
            .complete(&other, Outcome::Delivered, Duration::ZERO, t0)
            .is_empty());
        assert_eq!(s.stats(1).delivered, 1);
        s.enable(0);
        assert!(s.enqueue(0, event(6)).is_none());
    }

    #[test]
    fn breaker_stops_attempts_until_the_cool_down_then_probes_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(config("0s,0s,0s,0s,0s,0s"), &endpoints(&[4]));
        for n in 0..4 {
            s.enqueue(0, event(n));
        }
        for _ in 0..3 {
            let a = s.next_attempt(t0).unwrap();
            s.complete(&a, failed(500), Duration::ZERO, t0);
        }
        assert_eq!(s.stats(0).breaker, BreakerState::Open);
        assert!(s.next_attempt(t0 + Duration::from_secs(59)).is_none());
        assert_eq!(s.next_wake(t0), Some(t0 + Duration::from_secs(60)));
        let t1 = t0 + Duration::from_secs(60);
        let probe = s.next_attempt(t1).unwrap();
        assert!(s.next_attempt(t1).is_none(), "half-open: a single probe");
        s.complete(&probe, Outcome::Delivered, Duration::ZERO, t1);
        assert_eq!(s.stats(0).breaker, BreakerState::Closed);
        let mut started = 0;
        while let Some(a) = s.next_attempt(t1) {
            started += 1;
            s.complete(&a, Outcome::Delivered, Duration::ZERO, t1);
        }
        assert_eq!(started, 3);
        assert_eq!(s.stats(0).delivered, 4);
        assert!(s.is_idle());
    }

    #[test]
    fn slow_down_pauses_the_endpoint_and_retry_after_sets_the_delay() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(config("0s,1s,1s"), &endpoints(&[3, 1]));
        for n in 0..3 {
            s.enqueue(0, event(n));
        }
        s.enqueue(1, event(10));
        let a = s.next_attempt(t0).unwrap();
        assert_eq!(a.endpoint, 0);
        let retry_after = crate::webhook::policy::classify(503, Some("30"), None);
        s.complete(&a, retry_after, Duration::ZERO, t0);
        // Endpoint 0 pauses 30 s; endpoint 1 is not held up.
        let b = s.next_attempt(t0).unwrap();
        assert_eq!(b.endpoint, 1);
        assert!(s.next_attempt(t0 + Duration::from_secs(29)).is_none());
        let t1 = t0 + Duration::from_secs(30);
        let c = s.next_attempt(t1).unwrap();
        assert_eq!((c.event.id.as_str(), c.number), ("msg_0", 2));
        let busy = Outcome::Failed(Failure {
            retry_after: None,
            ..match failed(429) {
                Outcome::Failed(f) => f,
                _ => unreachable!(),
            }
        });
        s.complete(&c, busy, Duration::ZERO, t1);
        assert_eq!(s.stats(0).slowed_down, 2);
        assert_eq!(s.stats(0).breaker, BreakerState::Closed);
        assert!(s.next_attempt(t1 + Duration::from_secs(6)).is_none());
        assert!(s.next_attempt(t1 + Duration::from_secs(7)).is_some());
    }

    #[test]
    fn abort_and_backlog_and_drain_give_dead_letters() {
        let t0 = Instant::now();
        let mut cfg = config("0s,1s");
        cfg.max_backlog = 2;
        let mut s = Scheduler::new(cfg, &endpoints(&[1]));
        s.enqueue(0, event(0));
        s.enqueue(0, event(1));
        assert_eq!(
            s.enqueue(0, event(2)).unwrap().reason,
            DeadReason::BacklogFull
        );
        let a = s.next_attempt(t0).unwrap();
        let abort = crate::webhook::policy::classify(400, None, Some("abort-message"));
        assert_eq!(
            s.complete(&a, abort, Duration::ZERO, t0)[0].reason,
            DeadReason::Aborted
        );
        let b = s.next_attempt(t0).unwrap();
        let letters = s.drain(DeadReason::Shutdown);
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].id, "msg_1");
        assert!(s
            .complete(&b, Outcome::Delivered, Duration::ZERO, t0)
            .is_empty());
        assert!(s.is_idle());
        assert_eq!(s.stats(0).dead_lettered, 3);
    }

    #[test]
    fn a_first_delay_defers_the_first_attempt() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(config("5s,1s"), &endpoints(&[1]));
        s.enqueue(0, event(0));
        assert!(s.next_attempt(t0).is_none());
        assert_eq!(s.next_wake(t0), Some(t0 + Duration::from_secs(5)));
        let a = s.next_attempt(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(a.number, 1);
    }
}
