//! The delivery rules as pure functions of their inputs (no socket, no clock read): the
//! retry schedule, what a response means, and the per-endpoint circuit breaker.

use std::fmt;
use std::time::{Duration, Instant};

/// When the attempts of one message happen: the delay before each attempt, counted from
/// the previous failure (the first from when the message is taken up). The number of
/// delays is the number of attempts.
///
/// The default is the Standard Webhooks / Svix schedule: immediately, 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, 10 h, each delay varied by ±20 % jitter so that a receiver coming back
/// is not hit by every sender at the same instant.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    jitter: f64,
}

/// Why a retry schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// No attempt at all.
    Empty,
    /// A delay that is not `<number><unit>` with unit `ms`, `s`, `m` or `h`.
    BadDelay(String),
    /// Jitter outside `0.0..=1.0`.
    BadJitter,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::Empty => f.write_str("a retry schedule needs at least one attempt"),
            ScheduleError::BadDelay(d) => write!(
                f,
                "retry delay {d:?}: expected a number with a unit ms, s, m or h (e.g. 0s,500ms,5s)"
            ),
            ScheduleError::BadJitter => f.write_str("jitter must be between 0.0 and 1.0"),
        }
    }
}

impl std::error::Error for ScheduleError {}

impl Default for RetrySchedule {
    fn default() -> Self {
        let m = 60;
        let h = 60 * m;
        RetrySchedule {
            delays: [0, 5, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: 0.2,
        }
    }
}

impl RetrySchedule {
    /// A schedule with these delays (one per attempt) and the default ±20 % jitter.
    pub fn new(delays: impl IntoIterator<Item = Duration>) -> Result<Self, ScheduleError> {
        let delays: Vec<Duration> = delays.into_iter().collect();
        if delays.is_empty() {
            return Err(ScheduleError::Empty);
        }
        Ok(RetrySchedule {
            delays,
            jitter: 0.2,
        })
    }

    /// Parses `0s,1s,2s` (units `ms`, `s`, `m`, `h`; decimals allowed: `1.5s`).
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let delays = text
            .split(',')
            .map(|d| parse_duration(d.trim()).ok_or_else(|| ScheduleError::BadDelay(d.into())))
            .collect::<Result<Vec<_>, _>>()?;
        RetrySchedule::new(delays)
    }

    /// This schedule with another jitter fraction: each non-zero delay is drawn uniformly
    /// from `delay * (1 ± jitter)`. `0.0` makes the schedule exact.
    pub fn with_jitter(mut self, jitter: f64) -> Result<Self, ScheduleError> {
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ScheduleError::BadJitter);
        }
        self.jitter = jitter;
        Ok(self)
    }

    /// How many attempts a message gets.
    pub fn attempts(&self) -> u32 {
        self.delays.len().min(u32::MAX as usize) as u32
    }

    /// The delays as configured, before jitter.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The delay before attempt `attempt` (1-based), jittered with `random` (any u64);
    /// `None` past the last attempt.
    pub fn delay_before(&self, attempt: u32, random: u64) -> Option<Duration> {
        let base = *self.delays.get(attempt.checked_sub(1)? as usize)?;
        if base.is_zero() || self.jitter == 0.0 {
            return Some(base);
        }
        // A uniform factor in [1 - jitter, 1 + jitter].
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        Some(base.mul_f64(factor))
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        return None;
    };
    let value: f64 = number.trim().parse().ok()?;
    Duration::try_from_secs_f64(value * scale).ok()
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx response.
    Delivered,
    /// 410 Gone: the receiver asks never to be called again.
    Gone,
    /// The response carried `webhook-delivery: abort-message`: stop retrying this message.
    Abort { status: u16 },
    /// Anything else: retry on the schedule.
    Failed(Failure),
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What went wrong, for stats and dead letters: `HTTP 500`, `timeout`, …
    pub(crate) reason: String,
    /// The receiver asked to slow down (429, 502, 504 or a `Retry-After`): pause the
    /// whole endpoint, for `retry_after` or the configured slow-down.
    pub(crate) slow_down: bool,
    /// A `Retry-After` in seconds, if the response had a usable one.
    pub(crate) retry_after: Option<Duration>,
    /// Whether this failure counts toward opening the breaker (a 429 shows a live
    /// receiver that is busy, so it does not).
    pub(crate) trips_breaker: bool,
}

impl Failure {
    /// A failure before any response (connect, timeout, reset, TLS).
    pub(crate) fn transport(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            slow_down: false,
            retry_after: None,
            trips_breaker: true,
        }
    }
}

/// The meaning of a response, from its status and two headers. Only 2xx is success; a
/// 3xx is a failure (redirects are not followed: a receiver that moved must be
/// re-registered).
pub(crate) fn classify(status: u16, retry_after: Option<&str>, delivery: Option<&str>) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Delivered;
    }
    if delivery.is_some_and(|v| v.trim().eq_ignore_ascii_case("abort-message")) {
        return Outcome::Abort { status };
    }
    if status == 410 {
        return Outcome::Gone;
    }
    let retry_after =
        retry_after.and_then(|v| v.trim().parse::<u64>().ok().map(Duration::from_secs));
    Outcome::Failed(Failure {
        reason: format!("HTTP {status}"),
        slow_down: matches!(status, 429 | 502 | 504) || retry_after.is_some(),
        retry_after,
        trips_breaker: status != 429,
    })
}

/// The settings of each endpoint's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long an open breaker waits before letting one probe attempt through
    /// (default 30 s).
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The state of one endpoint's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BreakerState {
    /// Attempts flow.
    #[default]
    Closed,
    /// No attempt until the cool-down ends.
    Open,
    /// One probe attempt is allowed; its outcome closes or re-opens the breaker.
    HalfOpen,
}

/// A circuit breaker: opens after `failure_threshold` consecutive failures so that a dead
/// receiver costs one probe per cool-down instead of a worker per message.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probe_in_flight: bool,
    pub(crate) opened: u64,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            open_until: None,
            probe_in_flight: false,
            opened: 0,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    /// When an open breaker lets a probe through.
    pub(crate) fn open_until(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open => self.open_until,
            _ => None,
        }
    }

    /// Whether an attempt may start now. Moves Open to HalfOpen once the cool-down ends.
    pub(crate) fn allows(&mut self, now: Instant) -> bool {
        if self.state == BreakerState::Open && self.open_until.is_some_and(|t| now >= t) {
            self.state = BreakerState::HalfOpen;
            self.probe_in_flight = false;
        }
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => !self.probe_in_flight,
        }
    }

    /// An attempt started (after [`allows`](Self::allows) said yes).
    pub(crate) fn on_start(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.probe_in_flight = true;
        }
    }

    pub(crate) fn on_success(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive_failures = 0;
        self.open_until = None;
        self.probe_in_flight = false;
    }

    /// A failed attempt; `counts` is false for failures that show a live receiver.
    pub(crate) fn on_failure(&mut self, counts: bool, now: Instant) {
        let was_probe = self.state == BreakerState::HalfOpen && self.probe_in_flight;
        self.probe_in_flight = false;
        if !counts {
            return;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if was_probe
            || (self.state == BreakerState::Closed
                && self.consecutive_failures >= self.config.failure_threshold.max(1))
        {
            self.state = BreakerState::Open;
            self.open_until = Some(now + self.config.cool_down);
            self.opened += 1;
        }
    }

    /// An attempt that ended without a verdict on the receiver (shutdown): a probe slot
    /// is freed.
    pub(crate) fn on_abandon(&mut self) {
        self.probe_in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_parses_and_jitters_within_bounds() {
        let s = RetrySchedule::parse("0s, 500ms,1.5s,2m,1h").unwrap();
        assert_eq!(
            s.delays(),
            &[
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_millis(1500),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(s.attempts(), 5);
        assert_eq!(s.delay_before(1, 12345), Some(Duration::ZERO));
        assert_eq!(s.delay_before(6, 1), None);
        assert_eq!(s.delay_before(0, 1), None);
        let mut seen_low = false;
        let mut seen_high = false;
        let mut r = 1u64;
        for _ in 0..2000 {
            r = crate::webhook::event::splitmix(r);
            let d = s.delay_before(4, r).unwrap();
            assert!(
                d >= Duration::from_secs(96) && d <= Duration::from_secs(144),
                "{d:?}"
            );
            seen_low |= d < Duration::from_secs(105);
            seen_high |= d > Duration::from_secs(135);
        }
        assert!(seen_low && seen_high, "jitter covers its range");
        let exact = s.with_jitter(0.0).unwrap();
        assert_eq!(exact.delay_before(4, 99), Some(Duration::from_secs(120)));
        for bad in ["", "1", "5x", "-1s", "s", "1s,,2s"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RetrySchedule::new([]).is_err());
        assert!(RetrySchedule::default().with_jitter(1.5).is_err());
        assert_eq!(RetrySchedule::default().attempts(), 8);
    }

    #[test]
    fn responses_classify_by_the_spec() {
        assert_eq!(classify(200, None, None), Outcome::Delivered);
        assert_eq!(
            classify(204, Some("5"), Some("abort-message")),
            Outcome::Delivered
        );
        assert_eq!(classify(410, None, None), Outcome::Gone);
        assert_eq!(
            classify(400, None, Some("Abort-Message")),
            Outcome::Abort { status: 400 }
        );
        let Outcome::Failed(f) = classify(301, None, None) else {
            panic!("3xx must fail")
        };
        assert!(!f.slow_down && f.trips_breaker);
        for status in [429, 502, 504] {
            let Outcome::Failed(f) = classify(status, None, None) else {
                panic!()
            };
            assert!(f.slow_down);
            assert_eq!(f.trips_breaker, status != 429);
        }
        let Outcome::Failed(f) = classify(503, Some(" 7 "), None) else {
            panic!()
        };
        assert!(f.slow_down);
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
        let Outcome::Failed(f) = classify(500, Some("Wed, 21 Oct 2015 07:28:00 GMT"), None) else {
            panic!()
        };
        assert!(!f.slow_down && f.retry_after.is_none());
    }

    #[test]
    fn breaker_opens_probes_and_recovers() {
        let t0 = Instant::now();
        let cfg = BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(10),
        };
        let mut b = Breaker::new(cfg);
        for _ in 0..2 {
            assert!(b.allows(t0));
            b.on_start();
            b.on_failure(true, t0);
        }
        // A 429 neither counts nor resets.
        b.on_failure(false, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(true, t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.open_until(), Some(t0 + Duration::from_secs(10)));
        assert!(!b.allows(t0 + Duration::from_secs(9)));
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.allows(t1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_start();
        assert!(!b.allows(t1), "one probe at a time");
        b.on_failure(true, t1);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe re-opens");
        let t2 = t1 + Duration::from_secs(10);
        assert!(b.allows(t2));
        b.on_start();
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allows(t2));
        assert_eq!(b.opened, 2);
    }
}
