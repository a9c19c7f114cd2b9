//! What a caller can send: [`Metric`] (counter, gauge, timer, histogram, set,
//! distribution, with tags, sample rate, timestamp, container id), [`Event`] and
//! [`ServiceCheck`]. All of them borrow their strings: building one allocates nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One tag: `(key, value)`. An empty value makes a bare tag (`|#key`), which DogStatsD
/// and Etsy statsd accept and Telegraf does not.
pub type Tag<'a> = (&'a str, &'a str);

/// The value and type of a metric line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    /// `c`
    Count(i64),
    /// `g`, absolute.
    Gauge(f64),
    /// `g`, signed change.
    GaugeDelta(f64),
    /// `ms`, from a duration (kept in whole microseconds).
    Timer(Duration),
    /// `ms`, in milliseconds.
    TimerMs(f64),
    /// `h`
    Histogram(f64),
    /// `d`
    Distribution(f64),
    /// `s`
    Set(&'a str),
}

impl Value<'_> {
    pub(crate) fn type_code(&self) -> &'static [u8] {
        match self {
            Value::Count(_) => b"c",
            Value::Gauge(_) | Value::GaugeDelta(_) => b"g",
            Value::Timer(_) | Value::TimerMs(_) => b"ms",
            Value::Histogram(_) => b"h",
            Value::Distribution(_) => b"d",
            Value::Set(_) => b"s",
        }
    }
}

/// A metric to send with [`Client::send`](super::Client::send), built without allocating:
///
/// ```
/// use volley::statsd::Metric;
/// let m = Metric::count("requests", 1)
///     .tags(&[("route", "/login"), ("code", "200")])
///     .sample_rate(0.25);
/// # let _ = m;
/// ```
///
/// The client's shorthands ([`count`](super::Client::count),
/// [`gauge`](super::Client::gauge), ...) cover the untagged cases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: Value<'a>,
    pub(crate) sample_rate: f64,
    pub(crate) tags: &'a [Tag<'a>],
    pub(crate) timestamp: Option<u64>,
    pub(crate) container_id: Option<&'a str>,
}

impl<'a> Metric<'a> {
    fn new(name: &'a str, value: Value<'a>) -> Self {
        Metric {
            name,
            value,
            sample_rate: 1.0,
            tags: &[],
            timestamp: None,
            container_id: None,
        }
    }

    /// A counter increment, `name:value|c`.
    pub fn count(name: &'a str, value: i64) -> Self {
        Metric::new(name, Value::Count(value))
    }

    /// A gauge set to `value`, `name:value|g`. For Etsy and Telegraf a negative value is
    /// sent as `name:0|g` then `name:-v|g` in the same datagram, because a bare `-v` would
    /// be read as a decrement.
    pub fn gauge(name: &'a str, value: f64) -> Self {
        Metric::new(name, Value::Gauge(value))
    }

    /// A gauge change, `name:+d|g` or `name:-d|g` (Etsy and Telegraf; DogStatsD has no
    /// deltas and refuses it).
    pub fn gauge_delta(name: &'a str, delta: f64) -> Self {
        Metric::new(name, Value::GaugeDelta(delta))
    }

    /// A timing, `name:ms|ms`, with microsecond resolution (`12.345`).
    pub fn timing(name: &'a str, elapsed: Duration) -> Self {
        Metric::new(name, Value::Timer(elapsed))
    }

    /// A timing given in milliseconds, `name:ms|ms`.
    pub fn timing_ms(name: &'a str, millis: f64) -> Self {
        Metric::new(name, Value::TimerMs(millis))
    }

    /// A histogram sample, `name:value|h` (DogStatsD, Telegraf).
    pub fn histogram(name: &'a str, value: f64) -> Self {
        Metric::new(name, Value::Histogram(value))
    }

    /// A distribution sample, `name:value|d` (DogStatsD only).
    pub fn distribution(name: &'a str, value: f64) -> Self {
        Metric::new(name, Value::Distribution(value))
    }

    /// A set member, `name:member|s`: the daemon counts distinct members per flush.
    pub fn set(name: &'a str, member: &'a str) -> Self {
        Metric::new(name, Value::Set(member))
    }

    /// The metric's name (without the client's prefix).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Tags of this metric, sent after the client's default tags.
    pub fn tags(mut self, tags: &'a [Tag<'a>]) -> Self {
        self.tags = tags;
        self
    }

    /// Client-side sampling: the client sends this metric with probability `rate` and
    /// marks it `|@rate` so the daemon scales it back. Counters, timers, histograms and
    /// distributions only. A rate of 1 sends always and adds nothing to the line.
    pub fn sample_rate(mut self, rate: f64) -> Self {
        self.sample_rate = rate;
        self
    }

    /// The time the value belongs to, `|T<unix seconds>` (DogStatsD only, on counters and
    /// gauges: protocol v1.3).
    pub fn timestamp(mut self, at: SystemTime) -> Self {
        self.timestamp = Some(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        self
    }

    /// The originating container, `|c:<id>` (DogStatsD only).
    pub fn container_id(mut self, id: &'a str) -> Self {
        self.container_id = Some(id);
        self
    }
}

/// An event's priority (`p:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// `p:normal` (the daemon's default).
    Normal,
    /// `p:low`
    Low,
}

/// An event's alert type (`t:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertType {
    /// `t:info` (the daemon's default).
    Info,
    /// `t:warning`
    Warning,
    /// `t:error`
    Error,
    /// `t:success`
    Success,
}

/// A DogStatsD event, `_e{title_len,text_len}:title|text|...`. Newlines in the title and
/// text are sent escaped as `\n`, as DogStatsD expects; the lengths count UTF-8 bytes
/// after escaping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    pub(crate) title: &'a str,
    pub(crate) text: &'a str,
    pub(crate) timestamp: Option<u64>,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) aggregation_key: Option<&'a str>,
    pub(crate) priority: Option<Priority>,
    pub(crate) source_type: Option<&'a str>,
    pub(crate) alert_type: Option<AlertType>,
    pub(crate) tags: &'a [Tag<'a>],
}

impl<'a> Event<'a> {
    /// An event with a title and a text.
    pub fn new(title: &'a str, text: &'a str) -> Self {
        Event {
            title,
            text,
            timestamp: None,
            hostname: None,
            aggregation_key: None,
            priority: None,
            source_type: None,
            alert_type: None,
            tags: &[],
        }
    }

    /// `d:<unix seconds>`
    pub fn timestamp(mut self, at: SystemTime) -> Self {
        self.timestamp = Some(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        self
    }

    /// `h:<hostname>`
    pub fn hostname(mut self, host: &'a str) -> Self {
        self.hostname = Some(host);
        self
    }

    /// `k:<aggregation key>`
    pub fn aggregation_key(mut self, key: &'a str) -> Self {
        self.aggregation_key = Some(key);
        self
    }

    /// `p:normal|low`
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// `s:<source type name>`
    pub fn source_type(mut self, source: &'a str) -> Self {
        self.source_type = Some(source);
        self
    }

    /// `t:info|warning|error|success`
    pub fn alert_type(mut self, alert: AlertType) -> Self {
        self.alert_type = Some(alert);
        self
    }

    /// Tags of this event, after the client's default tags.
    pub fn tags(mut self, tags: &'a [Tag<'a>]) -> Self {
        self.tags = tags;
        self
    }
}

/// A service check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0
    Ok,
    /// 1
    Warning,
    /// 2
    Critical,
    /// 3
    Unknown,
}

/// A DogStatsD service check, `_sc|name|status|...|m:message`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceCheck<'a> {
    pub(crate) name: &'a str,
    pub(crate) status: Status,
    pub(crate) timestamp: Option<u64>,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) tags: &'a [Tag<'a>],
}

impl<'a> ServiceCheck<'a> {
    /// A check of `name` with `status`.
    pub fn new(name: &'a str, status: Status) -> Self {
        ServiceCheck {
            name,
            status,
            timestamp: None,
            hostname: None,
            message: None,
            tags: &[],
        }
    }

    /// `d:<unix seconds>`
    pub fn timestamp(mut self, at: SystemTime) -> Self {
        self.timestamp = Some(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        self
    }

    /// `h:<hostname>`
    pub fn hostname(mut self, host: &'a str) -> Self {
        self.hostname = Some(host);
        self
    }

    /// `m:<message>`, always last on the line; newlines are sent escaped as `\n`.
    pub fn message(mut self, message: &'a str) -> Self {
        self.message = Some(message);
        self
    }

    /// Tags of this check, after the client's default tags.
    pub fn tags(mut self, tags: &'a [Tag<'a>]) -> Self {
        self.tags = tags;
        self
    }
}
