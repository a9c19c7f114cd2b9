//! Turning a metric into its line, on the caller's thread, into a fixed buffer on the
//! stack: no allocation unless a line outgrows [`INLINE_CAPACITY`] (then it is formatted
//! again into a `Vec`, counted as `spilled`).
//!
//! Validation happens while copying: a reserved byte in a name or tag either fails the
//! metric with a typed error or, with `sanitize`, becomes `_`. Numbers go through `itoa`
//! and `ryu` (shortest round-trip form, no allocation). Sample rates are written as plain
//! decimals with up to 9 places, because Etsy statsd reads them with `^@([\d\.]+)` and
//! would take `1e-5` for `1`.

use std::mem::MaybeUninit;

use super::error::{MetricError, Part};
use super::metric::{AlertType, Event, Metric, Priority, ServiceCheck, Status, Tag, Value};
use super::reserved::{self, ReservedSet};

/// The wire dialect of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    /// Etsy statsd: `c g ms s`, gauge deltas, sample rates on `c` and `ms`. DogStatsD-style
    /// `|#` tags are sent too (Etsy statsd 0.9 folds them into the key as `name;k=v`).
    /// No `h`, `d` (Etsy counts them as counters), timestamps, container ids, events or
    /// service checks.
    #[default]
    Etsy,
    /// Datadog's DogStatsD: `c g ms h s d`, `|#k:v` tags, `|T` timestamps, `|c:` container
    /// ids, events and service checks. No gauge deltas (the agent reads `+5` as `5`).
    DogStatsd,
    /// Telegraf's statsd input: tags in the name (`name,k=v:1|c`), `c g ms h s`, gauge
    /// deltas. No `d`, bare tags, timestamps, container ids, events or service checks.
    Telegraf,
}

/// Bytes a line may take in a ring slot before it is formatted into a heap buffer.
pub(crate) const INLINE_CAPACITY: usize = 246;
const OVERFLOWED: u8 = u8::MAX;

/// Sample rates are kept in billionths.
pub(crate) const RATE_ONE: u64 = 1_000_000_000;

/// Where formatted bytes go: the fixed inline buffer, or a `Vec` for the rare long line.
pub(crate) trait Out {
    fn put(&mut self, bytes: &[u8]);
    fn put_byte(&mut self, byte: u8) {
        self.put(&[byte]);
    }
}

/// A line formatted in place: the item type of the client's ring stays plain bytes.
///
/// The buffer is left uninitialised (only `len` bytes are ever written or read): zeroing
/// 246 bytes per metric would cost more than formatting most lines.
// `repr(C)` fixes `len` before `bytes`, which `copy_to` relies on.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct InlineLine {
    len: u8,
    bytes: [MaybeUninit<u8>; INLINE_CAPACITY],
}

impl InlineLine {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        InlineLine {
            len: 0,
            bytes: [MaybeUninit::uninit(); INLINE_CAPACITY],
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.len == OVERFLOWED
    }

    /// Writes this line to `dst` touching only `len` bytes of its buffer: a copy of the
    /// line that costs what the line is long, not what the buffer can hold.
    ///
    /// # Safety
    /// `dst` must be valid for writes of an `InlineLine` (it need not be initialised).
    #[inline(always)]
    pub(crate) unsafe fn copy_to(&self, dst: *mut InlineLine) {
        let used = self.as_bytes();
        // SAFETY: `dst` is valid for writes of a whole `InlineLine` (the caller's
        // contract), so its `len` field and its first `used.len()` (at most
        // INLINE_CAPACITY) buffer bytes are too; `self` is a shared borrow, so the two
        // cannot overlap. Bytes past `len` stay uninitialised, which `MaybeUninit<u8>`
        // allows. An overflowed line keeps its marker and copies nothing.
        unsafe {
            std::ptr::addr_of_mut!((*dst).len).write(self.len);
            std::ptr::copy_nonoverlapping(
                used.as_ptr(),
                std::ptr::addr_of_mut!((*dst).bytes).cast::<u8>(),
                used.len(),
            );
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        let len = if self.overflowed() {
            0
        } else {
            self.len as usize
        };
        // SAFETY: `put` and `put_byte` initialise bytes `0..len` before raising `len`
        // (and `len` never exceeds INLINE_CAPACITY unless it is OVERFLOWED, handled
        // above); `u8` has no invalid bit patterns.
        unsafe { std::slice::from_raw_parts(self.bytes.as_ptr().cast::<u8>(), len) }
    }
}

/// `copy_nonoverlapping` for the short runs a line is made of (a prefix, a name, a type
/// code), without a call into the C library's `memcpy`: for 1 to 16 bytes, two possibly
/// overlapping loads and stores of the widest size that fits, as `memcpy` itself does
/// once it is reached; the call around it was the larger cost (it showed up as about a
/// tenth of a metric's profile).
///
/// # Safety
/// As for `copy_nonoverlapping`: `src` valid for `n` reads, `dst` for `n` writes, no
/// overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: every access below is at an offset below `n` (the caller's contract covers
    // `0..n`); unaligned reads and writes are used for the wider ones.
    unsafe {
        match n {
            0 => {}
            1..=3 => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            4..=7 => {
                let head = src.cast::<u32>().read_unaligned();
                let tail = src.add(n - 4).cast::<u32>().read_unaligned();
                dst.cast::<u32>().write_unaligned(head);
                dst.add(n - 4).cast::<u32>().write_unaligned(tail);
            }
            8..=16 => {
                let head = src.cast::<u64>().read_unaligned();
                let tail = src.add(n - 8).cast::<u64>().read_unaligned();
                dst.cast::<u64>().write_unaligned(head);
                dst.add(n - 8).cast::<u64>().write_unaligned(tail);
            }
            _ => std::ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

impl Out for InlineLine {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        let len = self.len as usize;
        let end = len + bytes.len();
        if self.len != OVERFLOWED && end <= INLINE_CAPACITY {
            // SAFETY: `len..end` lies within the buffer (checked above); source and
            // destination cannot overlap (`bytes` is a shared borrow, the buffer is ours
            // mutably).
            unsafe {
                copy_short(
                    bytes.as_ptr(),
                    self.bytes.as_mut_ptr().add(len).cast::<u8>(),
                    bytes.len(),
                );
            }
            self.len = end as u8;
        } else {
            self.len = OVERFLOWED;
        }
    }

    #[inline(always)]
    fn put_byte(&mut self, byte: u8) {
        let len = self.len as usize;
        if len < INLINE_CAPACITY {
            self.bytes[len] = MaybeUninit::new(byte);
            self.len += 1;
        } else {
            self.len = OVERFLOWED;
        }
    }
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// What a line carries after its `:`. An enum rather than a closure: the closure was
/// left out of line, a call per metric.
#[derive(Clone, Copy)]
enum LineValue {
    /// The metric's own value.
    Metric,
    /// `0`: the reset line sent before a negative gauge set.
    Zero,
}

#[inline(always)]
fn put_checked<O: Out + ?Sized>(
    o: &mut O,
    s: &str,
    part: Part,
    reserved: &ReservedSet,
    sanitize: bool,
) -> Result<(), MetricError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(MetricError::Empty(part));
    }
    if !reserved.any_in(bytes) {
        o.put(bytes);
    } else if sanitize {
        for &b in bytes {
            o.put_byte(if reserved.contains(b) { b'_' } else { b });
        }
    } else if let Some(byte) = reserved.first_in(bytes) {
        return Err(MetricError::ReservedByte { part, byte });
    } else {
        o.put(bytes);
    }
    Ok(())
}

/// Writes `s` with each newline as the two bytes `\n` (DogStatsD event and check text).
fn put_escaped<O: Out + ?Sized>(o: &mut O, s: &str) {
    let mut rest = s.as_bytes();
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        o.put(&rest[..i]);
        o.put(b"\\n");
        rest = &rest[i + 1..];
    }
    o.put(rest);
}

fn escaped_len(s: &str) -> usize {
    s.len() + s.bytes().filter(|&b| b == b'\n').count()
}

#[inline(always)]
fn put_i64<O: Out + ?Sized>(o: &mut O, v: i64) {
    let mut b = itoa::Buffer::new();
    o.put(b.format(v).as_bytes());
}

#[inline(always)]
fn put_u64<O: Out + ?Sized>(o: &mut O, v: u64) {
    let mut b = itoa::Buffer::new();
    o.put(b.format(v).as_bytes());
}

/// Integral values below 2^53 as integers (`3`, not `3.0`); others in ryu's shortest
/// round-trip form, which every daemon's number parser reads.
#[inline(always)]
pub(crate) fn put_f64<O: Out + ?Sized>(o: &mut O, v: f64) {
    const EXACT: f64 = (1u64 << 53) as f64;
    if v.fract() == 0.0 && v.abs() < EXACT {
        put_i64(o, v as i64);
    } else {
        let mut b = ryu::Buffer::new();
        o.put(b.format_finite(v).as_bytes());
    }
}

/// A duration in milliseconds with microsecond resolution, trailing zeros trimmed.
fn put_duration_ms<O: Out + ?Sized>(o: &mut O, d: std::time::Duration) {
    let micros = d.as_micros().min(u64::MAX as u128) as u64;
    put_u64(o, micros / 1000);
    let frac = micros % 1000;
    if frac != 0 {
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let mut n = 4;
        while digits[n - 1] == b'0' {
            n -= 1;
        }
        o.put(&digits[..n]);
    }
}

/// A rate in billionths (`0 < r < RATE_ONE`) as `0.xxx`, trailing zeros trimmed.
fn put_rate<O: Out + ?Sized>(o: &mut O, rate: u64) {
    let mut digits = [b'0'; 11];
    digits[1] = b'.';
    let mut r = rate;
    for i in (2..11).rev() {
        digits[i] = b'0' + (r % 10) as u8;
        r /= 10;
    }
    let mut n = 11;
    while digits[n - 1] == b'0' {
        n -= 1;
    }
    o.put(&digits[..n]);
}

/// A sample rate in billionths, or an error if it is outside `(0, 1]` or rounds to 0.
#[inline(always)]
pub(crate) fn rate_billionths(rate: f64) -> Result<u64, MetricError> {
    if rate == 1.0 {
        return Ok(RATE_ONE);
    }
    if !(rate > 0.0 && rate <= 1.0) {
        return Err(MetricError::InvalidSampleRate);
    }
    match (rate * RATE_ONE as f64).round() as u64 {
        0 => Err(MetricError::InvalidSampleRate),
        r => Ok(r),
    }
}

/// Validated per-client formatting state: flavour, prefix, default tags.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    flavour: Flavour,
    sanitize: bool,
    /// The prefix with its trailing `.`, or empty.
    prefix: Box<[u8]>,
    /// Default tags as they go on the wire: `k:v,k2` after `|#`, or `,k=v,k2=v2` after
    /// the name for Telegraf.
    default_tags: Box<[u8]>,
}

impl Encoder {
    pub(crate) fn new(
        flavour: Flavour,
        prefix: &str,
        default_tags: &[(String, String)],
        sanitize: bool,
    ) -> Result<Encoder, MetricError> {
        let mut enc = Encoder {
            flavour,
            sanitize,
            prefix: Box::new([]),
            default_tags: Box::new([]),
        };
        let mut p = Vec::new();
        if !prefix.is_empty() {
            let trimmed = prefix.strip_suffix('.').unwrap_or(prefix);
            put_checked(&mut p, trimmed, Part::Name, &reserved::NAME, sanitize)?;
            p.push(b'.');
        }
        enc.prefix = p.into_boxed_slice();
        let tags: Vec<Tag<'_>> = default_tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut t = Vec::new();
        enc.put_tag_list(&mut t, &tags, false)?;
        enc.default_tags = t.into_boxed_slice();
        Ok(enc)
    }

    pub(crate) fn flavour(&self) -> Flavour {
        self.flavour
    }

    fn unsupported(&self, what: &'static str) -> MetricError {
        MetricError::Unsupported {
            flavour: self.flavour,
            what,
        }
    }

    /// Tags as the flavour writes them. Telegraf: `,k=v` each. Others: `k:v` joined by
    /// `,`, with a leading `,` when `after_defaults` (default tags already written).
    fn put_tag_list<O: Out + ?Sized>(
        &self,
        o: &mut O,
        tags: &[Tag<'_>],
        after_defaults: bool,
    ) -> Result<(), MetricError> {
        let telegraf = self.flavour == Flavour::Telegraf;
        let reserved = if telegraf {
            &reserved::TELEGRAF_TAG
        } else {
            &reserved::NAME
        };
        for (i, (key, value)) in tags.iter().enumerate() {
            if telegraf || after_defaults || i > 0 {
                o.put_byte(b',');
            }
            put_checked(o, key, Part::TagKey, reserved, self.sanitize)?;
            if !value.is_empty() {
                o.put_byte(if telegraf { b'=' } else { b':' });
                put_checked(o, value, Part::TagValue, reserved, self.sanitize)?;
            } else if telegraf {
                return Err(self.unsupported("a tag without a value"));
            }
        }
        Ok(())
    }

    /// Checks what the flavour can express and the value's range; returns the sample
    /// rate in billionths.
    #[inline(always)]
    pub(crate) fn check(&self, m: &Metric<'_>) -> Result<u64, MetricError> {
        let f = self.flavour;
        let finite = |v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(MetricError::NotFinite)
            }
        };
        match m.value {
            Value::Count(_) | Value::Set(_) | Value::Timer(_) => {}
            Value::Gauge(v) | Value::Histogram(v) | Value::Distribution(v) => finite(v)?,
            Value::GaugeDelta(v) => {
                finite(v)?;
                if f == Flavour::DogStatsd {
                    return Err(self.unsupported("gauge deltas (the agent reads +5 as a set)"));
                }
            }
            Value::TimerMs(v) => {
                finite(v)?;
                if v < 0.0 {
                    return Err(MetricError::NegativeTimer);
                }
            }
        }
        match (m.value, f) {
            (Value::Histogram(_), Flavour::Etsy) => {
                return Err(self.unsupported("histograms (Etsy statsd counts `h` as a counter)"))
            }
            (Value::Distribution(_), Flavour::Etsy | Flavour::Telegraf) => {
                return Err(self.unsupported("distributions (`d`)"))
            }
            _ => {}
        }
        if m.timestamp.is_some() && !matches!(m.value, Value::Count(_) | Value::Gauge(_)) {
            // DogStatsD protocol v1.3 takes `|T` on counts and gauges only.
            return Err(self.unsupported("timestamps on types other than counters and gauges"));
        }
        if f != Flavour::DogStatsd {
            if m.timestamp.is_some() {
                return Err(self.unsupported("timestamps (`|T`)"));
            }
            if m.container_id.is_some() {
                return Err(self.unsupported("container ids (`|c:`)"));
            }
        }
        let rate = rate_billionths(m.sample_rate)?;
        if rate != RATE_ONE {
            let ok = match m.value {
                Value::Count(_) | Value::Timer(_) | Value::TimerMs(_) => true,
                Value::Histogram(_) | Value::Distribution(_) => f != Flavour::Etsy,
                _ => false,
            };
            if !ok {
                return Err(self.unsupported("a sample rate on gauges and sets"));
            }
        }
        Ok(rate)
    }

    /// Writes the metric (already [`check`](Self::check)ed, with its rate) as one line,
    /// or as two for a negative gauge set in a flavour with deltas.
    #[inline(always)]
    pub(crate) fn encode<O: Out + ?Sized>(
        &self,
        o: &mut O,
        m: &Metric<'_>,
        rate: u64,
    ) -> Result<(), MetricError> {
        if let Value::Gauge(v) = m.value {
            if v < 0.0 && self.flavour != Flavour::DogStatsd {
                self.line(o, m, rate, LineValue::Zero)?;
                o.put_byte(b'\n');
            }
        }
        self.line(o, m, rate, LineValue::Metric)
    }

    #[inline(always)]
    fn put_value<O: Out + ?Sized>(&self, o: &mut O, value: &Value<'_>) -> Result<(), MetricError> {
        match *value {
            Value::Count(v) => put_i64(o, v),
            Value::Gauge(v) | Value::Histogram(v) | Value::Distribution(v) | Value::TimerMs(v) => {
                put_f64(o, v)
            }
            Value::GaugeDelta(v) => {
                // The sign marks a delta; `-0` and `+0` are both "no change".
                o.put_byte(if v < 0.0 { b'-' } else { b'+' });
                put_f64(o, v.abs());
            }
            Value::Timer(d) => put_duration_ms(o, d),
            Value::Set(member) => put_checked(
                o,
                member,
                Part::SetValue,
                &reserved::SET_MEMBER,
                self.sanitize,
            )?,
        }
        Ok(())
    }

    #[inline(always)]
    fn line<O: Out + ?Sized>(
        &self,
        o: &mut O,
        m: &Metric<'_>,
        rate: u64,
        value: LineValue,
    ) -> Result<(), MetricError> {
        o.put(&self.prefix);
        put_checked(o, m.name, Part::Name, &reserved::NAME, self.sanitize)?;
        let telegraf = self.flavour == Flavour::Telegraf;
        if telegraf {
            o.put(&self.default_tags);
            self.put_tag_list(o, m.tags, true)?;
        }
        o.put_byte(b':');
        match value {
            LineValue::Metric => self.put_value(o, &m.value)?,
            LineValue::Zero => o.put_byte(b'0'),
        }
        o.put_byte(b'|');
        o.put(m.value.type_code());
        if rate != RATE_ONE {
            o.put(b"|@");
            put_rate(o, rate);
        }
        if !telegraf {
            self.put_dog_tags(o, m.tags)?;
        }
        if let Some(ts) = m.timestamp {
            o.put(b"|T");
            put_u64(o, ts);
        }
        if let Some(id) = m.container_id {
            o.put(b"|c:");
            put_checked(o, id, Part::ContainerId, &reserved::NAME, self.sanitize)?;
        }
        Ok(())
    }

    #[inline(always)]
    fn put_dog_tags<O: Out + ?Sized>(
        &self,
        o: &mut O,
        tags: &[Tag<'_>],
    ) -> Result<(), MetricError> {
        if self.default_tags.is_empty() && tags.is_empty() {
            return Ok(());
        }
        o.put(b"|#");
        o.put(&self.default_tags);
        self.put_tag_list(o, tags, !self.default_tags.is_empty())
    }

    fn require_dogstatsd(&self, what: &'static str) -> Result<(), MetricError> {
        if self.flavour == Flavour::DogStatsd {
            Ok(())
        } else {
            Err(self.unsupported(what))
        }
    }

    fn put_field<O: Out + ?Sized>(
        &self,
        o: &mut O,
        key: &[u8],
        value: &str,
    ) -> Result<(), MetricError> {
        o.put(key);
        put_checked(o, value, Part::Field, &reserved::NAME, self.sanitize)
    }

    /// `_e{title_len,text_len}:title|text|d:..|h:..|k:..|p:..|s:..|t:..|#tags`
    pub(crate) fn encode_event<O: Out + ?Sized>(
        &self,
        o: &mut O,
        e: &Event<'_>,
    ) -> Result<(), MetricError> {
        self.require_dogstatsd("events")?;
        if e.title.is_empty() {
            return Err(MetricError::Empty(Part::Name));
        }
        o.put(b"_e{");
        put_u64(o, escaped_len(e.title) as u64);
        o.put_byte(b',');
        put_u64(o, escaped_len(e.text) as u64);
        o.put(b"}:");
        put_escaped(o, e.title);
        o.put_byte(b'|');
        put_escaped(o, e.text);
        if let Some(ts) = e.timestamp {
            o.put(b"|d:");
            put_u64(o, ts);
        }
        if let Some(h) = e.hostname {
            self.put_field(o, b"|h:", h)?;
        }
        if let Some(k) = e.aggregation_key {
            self.put_field(o, b"|k:", k)?;
        }
        if let Some(p) = e.priority {
            o.put(match p {
                Priority::Normal => b"|p:normal".as_slice(),
                Priority::Low => b"|p:low",
            });
        }
        if let Some(s) = e.source_type {
            self.put_field(o, b"|s:", s)?;
        }
        if let Some(t) = e.alert_type {
            o.put(match t {
                AlertType::Info => b"|t:info".as_slice(),
                AlertType::Warning => b"|t:warning",
                AlertType::Error => b"|t:error",
                AlertType::Success => b"|t:success",
            });
        }
        self.put_dog_tags(o, e.tags)
    }

    /// `_sc|name|status|d:..|h:..|#tags|m:message`
    pub(crate) fn encode_service_check<O: Out + ?Sized>(
        &self,
        o: &mut O,
        c: &ServiceCheck<'_>,
    ) -> Result<(), MetricError> {
        self.require_dogstatsd("service checks")?;
        o.put(b"_sc|");
        o.put(&self.prefix);
        put_checked(o, c.name, Part::Name, &reserved::NAME, self.sanitize)?;
        o.put(match c.status {
            Status::Ok => b"|0".as_slice(),
            Status::Warning => b"|1",
            Status::Critical => b"|2",
            Status::Unknown => b"|3",
        });
        if let Some(ts) = c.timestamp {
            o.put(b"|d:");
            put_u64(o, ts);
        }
        if let Some(h) = c.hostname {
            self.put_field(o, b"|h:", h)?;
        }
        self.put_dog_tags(o, c.tags)?;
        if let Some(m) = c.message {
            // The message runs to the end of the line, but the agent splits fields on `|`.
            if let Some(byte) = m.bytes().find(|&b| b == b'|' || b == b'\r') {
                if !self.sanitize {
                    return Err(MetricError::ReservedByte {
                        part: Part::Field,
                        byte,
                    });
                }
            }
            o.put(b"|m:");
            for chunk in m.split('\n').enumerate() {
                if chunk.0 > 0 {
                    o.put(b"\\n");
                }
                for b in chunk.1.bytes() {
                    o.put_byte(if b == b'|' || b == b'\r' { b'_' } else { b });
                }
            }
        }
        Ok(())
    }
}
