//! Reading a StatsD line back: the CLI validates the lines it is given before sending
//! them, and client-side aggregation keys lines by everything but their value. Input is
//! untrusted bytes: every malformed line is a typed [`LineError`], never a panic (fuzzed,
//! see `fuzz/fuzz_targets/statsd_line.rs`).

use std::fmt;

use super::reserved;
use super::Flavour;

/// Why a line is not a well-formed StatsD line for a flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// Empty line.
    Empty,
    /// A line holds a newline (send several lines as several arguments).
    Newline,
    /// No `:` between name and value.
    NoValue,
    /// The name is empty or holds a reserved byte.
    BadName,
    /// The value is not a number the type needs (or a negative timer, or an empty set
    /// member).
    BadValue,
    /// The type is not one of `c g ms h s d`.
    UnknownType,
    /// The sample rate is not `@` and a plain decimal in `(0, 1]`.
    BadSampleRate,
    /// A trailing field is not `#tags`, `T<seconds>` or `c:<id>`, or is malformed.
    BadField,
    /// An event (`_e{..}`) whose lengths do not match its title and text, or a service
    /// check (`_sc|..`) without a name or a status 0..3.
    BadEvent,
    /// The flavour cannot express this line.
    Unsupported {
        /// The flavour checked against.
        flavour: Flavour,
        /// What it cannot express.
        what: &'static str,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Empty => f.write_str("empty line"),
            LineError::Newline => f.write_str("line contains a newline"),
            LineError::NoValue => f.write_str("no ':' between name and value"),
            LineError::BadName => f.write_str("empty name or reserved byte in the name"),
            LineError::BadValue => f.write_str("value is not valid for the metric type"),
            LineError::UnknownType => f.write_str("type is not one of c g ms h s d"),
            LineError::BadSampleRate => f.write_str("sample rate is not @ and a decimal in (0, 1]"),
            LineError::BadField => f.write_str("trailing field is not #tags, T<seconds> or c:<id>"),
            LineError::BadEvent => f.write_str("malformed event or service check"),
            LineError::Unsupported { flavour, what } => {
                write!(f, "the {flavour:?} flavour cannot express {what}")
            }
        }
    }
}

impl std::error::Error for LineError {}

/// A metric line split into its parts (all borrowed from the line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricLine<'a> {
    /// The name; for Telegraf lines it includes the `,k=v` tags.
    pub name: &'a [u8],
    /// The value as written.
    pub value: &'a [u8],
    /// The type: `c g ms h s d`.
    pub kind: &'a [u8],
    /// The sample rate, 1 when absent.
    pub sample_rate: f64,
    /// Everything after the type and rate (`|#tags|T..|c:..`), possibly empty.
    pub rest: &'a [u8],
    /// Whether `rest` holds a `|T` timestamp.
    pub timestamped: bool,
    /// Whether `rest` holds `|#` tags.
    pub tagged: bool,
    /// Whether `rest` holds a `|c:` container id.
    pub container: bool,
}

/// One line: a metric, an event or a service check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Line<'a> {
    /// `name:value|type...`
    Metric(MetricLine<'a>),
    /// `_e{..}:title|text...`
    Event,
    /// `_sc|name|status...`
    ServiceCheck,
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

fn number(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    // Rust's float parser takes `inf` and `nan`; no daemon does.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_rate(field: &[u8]) -> Result<f64, LineError> {
    let digits = field.strip_prefix(b"@").ok_or(LineError::BadSampleRate)?;
    if digits.is_empty() || !digits.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return Err(LineError::BadSampleRate);
    }
    match number(digits) {
        Some(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err(LineError::BadSampleRate),
    }
}

/// Splits a line into its parts, checking the syntax every daemon shares.
pub fn parse_line(line: &[u8]) -> Result<Line<'_>, LineError> {
    if line.is_empty() {
        return Err(LineError::Empty);
    }
    if line.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Err(LineError::Newline);
    }
    if let Some(rest) = line.strip_prefix(b"_e{") {
        return parse_event(rest);
    }
    if let Some(rest) = line.strip_prefix(b"_sc|") {
        return parse_service_check(rest);
    }
    let (name, after) = split_once(line, b':').ok_or(LineError::NoValue)?;
    if name.is_empty() || reserved::LINE_NAME.any_in(name) {
        return Err(LineError::BadName);
    }
    let (value, after) = split_once(after, b'|').ok_or(LineError::UnknownType)?;
    let kind_end = after.iter().position(|&b| b == b'|').unwrap_or(after.len());
    let kind = &after[..kind_end];
    match kind {
        b"c" | b"h" | b"d" | b"g" => number(value).map(|_| ()).ok_or(LineError::BadValue)?,
        b"ms" => match number(value) {
            Some(v) if v >= 0.0 && !value.starts_with(b"-") => {}
            _ => return Err(LineError::BadValue),
        },
        b"s" => {
            if value.is_empty() || value.contains(&b':') {
                return Err(LineError::BadValue);
            }
        }
        _ => return Err(LineError::UnknownType),
    }
    // `rest` is empty or whole `|field` items.
    let mut rest = &after[kind_end..];
    let mut sample_rate = 1.0;
    if let Some(fields) = rest.strip_prefix(b"|") {
        if fields.first() == Some(&b'@') {
            let end = fields
                .iter()
                .position(|&b| b == b'|')
                .unwrap_or(fields.len());
            sample_rate = parse_rate(&fields[..end])?;
            rest = &fields[end..];
        }
    }
    let (mut timestamped, mut tagged, mut container) = (false, false, false);
    for field in rest.split(|&b| b == b'|').skip(1) {
        if let Some(tags) = field.strip_prefix(b"#") {
            if tagged || tags.is_empty() || tags.split(|&b| b == b',').any(|t| t.is_empty()) {
                return Err(LineError::BadField);
            }
            tagged = true;
        } else if let Some(ts) = field.strip_prefix(b"T") {
            if timestamped || ts.is_empty() || !ts.iter().all(u8::is_ascii_digit) {
                return Err(LineError::BadField);
            }
            timestamped = true;
        } else if let Some(id) = field.strip_prefix(b"c:") {
            if container || id.is_empty() {
                return Err(LineError::BadField);
            }
            container = true;
        } else {
            return Err(LineError::BadField);
        }
    }
    Ok(Line::Metric(MetricLine {
        name,
        value,
        kind,
        sample_rate,
        rest,
        timestamped,
        tagged,
        container,
    }))
}

fn parse_len(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 7 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_event(rest: &[u8]) -> Result<Line<'_>, LineError> {
    let (lens, body) = split_once(rest, b'}').ok_or(LineError::BadEvent)?;
    let (title_len, text_len) = split_once(lens, b',').ok_or(LineError::BadEvent)?;
    let (title_len, text_len) = (
        parse_len(title_len).ok_or(LineError::BadEvent)?,
        parse_len(text_len).ok_or(LineError::BadEvent)?,
    );
    let body = body.strip_prefix(b":").ok_or(LineError::BadEvent)?;
    if title_len == 0 || body.len() < title_len + 1 + text_len {
        return Err(LineError::BadEvent);
    }
    if body[title_len] != b'|' {
        return Err(LineError::BadEvent);
    }
    let after = &body[title_len + 1 + text_len..];
    if !after.is_empty() && after[0] != b'|' {
        return Err(LineError::BadEvent);
    }
    Ok(Line::Event)
}

fn parse_service_check(rest: &[u8]) -> Result<Line<'_>, LineError> {
    let mut fields = rest.split(|&b| b == b'|');
    let name = fields.next().unwrap_or_default();
    let status = fields.next().ok_or(LineError::BadEvent)?;
    if name.is_empty() || !matches!(status, b"0" | b"1" | b"2" | b"3") {
        return Err(LineError::BadEvent);
    }
    Ok(Line::ServiceCheck)
}

/// Parses `line` and checks that `flavour` can express it (types, tags, timestamps,
/// container ids, events).
pub fn check_line(line: &[u8], flavour: Flavour) -> Result<Line<'_>, LineError> {
    let parsed = parse_line(line)?;
    let unsupported = |what| Err(LineError::Unsupported { flavour, what });
    match (&parsed, flavour) {
        (Line::Event | Line::ServiceCheck, Flavour::Etsy | Flavour::Telegraf) => {
            return unsupported("events and service checks")
        }
        (Line::Metric(m), _) => {
            if flavour != Flavour::DogStatsd && (m.timestamped || m.container) {
                return unsupported("timestamps and container ids");
            }
            if flavour == Flavour::Telegraf && m.tagged {
                return unsupported("`|#` tags (Telegraf tags go in the name: name,k=v)");
            }
            if flavour != Flavour::Telegraf && m.name.contains(&b',') {
                return Err(LineError::BadName);
            }
            match (m.kind, flavour) {
                (b"h", Flavour::Etsy) => return unsupported("histograms"),
                (b"d", Flavour::Etsy | Flavour::Telegraf) => return unsupported("distributions"),
                _ => {}
            }
            if m.timestamped && !matches!(m.kind, b"c" | b"g") {
                return unsupported("timestamps on types other than counters and gauges");
            }
            if flavour == Flavour::DogStatsd && m.kind == b"g" && m.value.first() == Some(&b'+') {
                return unsupported("gauge deltas");
            }
        }
        _ => {}
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(line: &str) -> MetricLine<'_> {
        match parse_line(line.as_bytes()) {
            Ok(Line::Metric(m)) => m,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn splits_every_part() {
        let m = metric("a.b:1.5|ms|@0.25|#k:v,x|T1700000000|c:abc");
        assert_eq!(m.name, b"a.b");
        assert_eq!(m.value, b"1.5");
        assert_eq!(m.kind, b"ms");
        assert_eq!(m.sample_rate, 0.25);
        assert_eq!(m.rest, b"|#k:v,x|T1700000000|c:abc");
        assert!(m.tagged && m.timestamped && m.container);
        let m = metric("n:-3|g");
        assert_eq!((m.value, m.kind, m.rest), (&b"-3"[..], &b"g"[..], &b""[..]));
        let m = metric("n:1|c|@0.5");
        assert_eq!((m.sample_rate, m.rest), (0.5, &b""[..]));
        let m = metric("n,host=a:1|c");
        assert_eq!(m.name, b"n,host=a");
    }

    #[test]
    fn refuses_malformed_lines() {
        for (line, err) in [
            ("", LineError::Empty),
            ("a:1|c\nb:1|c", LineError::Newline),
            ("a", LineError::NoValue),
            (":1|c", LineError::BadName),
            ("a@b:1|c", LineError::BadName),
            ("a#b:1|c", LineError::BadName),
            ("a|b:1|c", LineError::BadName),
            ("a:1", LineError::UnknownType),
            ("a:1|x", LineError::UnknownType),
            ("a:x|c", LineError::BadValue),
            ("a:nan|g", LineError::BadValue),
            ("a:inf|g", LineError::BadValue),
            ("a:-1|ms", LineError::BadValue),
            ("a:|s", LineError::BadValue),
            ("a:1|c|@2", LineError::BadSampleRate),
            ("a:1|c|@1e-5", LineError::BadSampleRate),
            ("a:1|c|@", LineError::BadSampleRate),
            ("a:1|c|", LineError::BadField),
            ("a:1|c|#", LineError::BadField),
            ("a:1|c|#a,,b", LineError::BadField),
            ("a:1|c|x", LineError::BadField),
            ("a:1|c|T12x", LineError::BadField),
            ("_e{5,4}:title|tex", LineError::BadEvent),
            ("_e{5,4}:titl|text", LineError::BadEvent),
            ("_sc|name|7", LineError::BadEvent),
        ] {
            assert_eq!(parse_line(line.as_bytes()), Err(err), "{line:?}");
        }
        assert_eq!(parse_line(b"_e{5,4}:title|text|#a"), Ok(Line::Event));
        assert_eq!(parse_line(b"_sc|db|2|m:down"), Ok(Line::ServiceCheck));
    }

    #[test]
    fn flavour_checks() {
        use Flavour::*;
        assert!(check_line(b"a:1|h", Etsy).is_err());
        assert!(check_line(b"a:1|h", Telegraf).is_ok());
        assert!(check_line(b"a:1|d", Telegraf).is_err());
        assert!(check_line(b"a:1|d", DogStatsd).is_ok());
        assert!(check_line(b"a:1|c|T5", Etsy).is_err());
        assert!(check_line(b"a:1|c|#k:v", Etsy).is_ok());
        assert!(check_line(b"a:1|c|#k:v", Telegraf).is_err());
        assert!(check_line(b"a,k=v:1|c", Telegraf).is_ok());
        assert!(check_line(b"a,k=v:1|c", Etsy).is_err());
        assert!(check_line(b"a:+1|g", DogStatsd).is_err());
        assert!(check_line(b"a:+1|g", Etsy).is_ok());
        assert!(check_line(b"_e{1,1}:t|x", Etsy).is_err());
        assert!(check_line(b"a:1|g|T5", DogStatsd).is_ok());
        assert!(check_line(b"a:1|d|T5", DogStatsd).is_err());
    }
}
