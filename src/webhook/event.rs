//! One event as it is sent: its id (the `webhook-id`, stable across retries), its type and
//! its JSON body `{"type","timestamp","data"}`, serialized once when it is emitted.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The id of an emitted message: its `webhook-id` header, the receiver's idempotency key.
/// The same on every attempt and on a replay.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub(crate) String);

impl MessageId {
    /// The id as sent, e.g. `msg_2kq5c3xk0a1b7n3f0000000001`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event ready to send to any number of endpoints. Shared (`Arc`) between them.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) id: MessageId,
    pub(crate) event_type: String,
    /// The exact bytes that are signed and sent.
    pub(crate) body: String,
}

impl Event {
    /// Builds the body `{"type":…,"timestamp":…,"data":…}` around `data_json`, which must
    /// already be valid JSON.
    #[cfg(test)]
    pub(crate) fn new(id: MessageId, event_type: &str, data_json: &str, at: SystemTime) -> Event {
        Event::build(id, event_type, at, |out| {
            out.extend_from_slice(data_json.as_bytes());
            Ok(())
        })
        .expect("test data is UTF-8")
    }

    /// Builds the body `{"type":…,"timestamp":…,"data":…}`, with `write_data` appending the
    /// data's JSON (valid UTF-8 JSON, or an error).
    pub(crate) fn build(
        id: MessageId,
        event_type: &str,
        at: SystemTime,
        write_data: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    ) -> Result<Event, String> {
        let mut head = String::with_capacity(event_type.len() + 64);
        head.push_str("{\"type\":");
        push_json_string(&mut head, event_type);
        head.push_str(",\"timestamp\":\"");
        push_rfc3339(&mut head, at);
        head.push_str("\",\"data\":");
        let mut body = head.into_bytes();
        body.reserve(64);
        write_data(&mut body)?;
        body.push(b'}');
        let body = String::from_utf8(body).map_err(|_| "data is not UTF-8".to_owned())?;
        Ok(Event {
            id,
            event_type: event_type.to_owned(),
            body,
        })
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `at` as ISO 8601 / RFC 3339 in UTC with microseconds:
/// `2026-11-25T10:54:56.123456Z`.
pub(crate) fn push_rfc3339(out: &mut String, at: SystemTime) {
    use std::fmt::Write;
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let in_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        since.subsec_micros()
    );
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A 64-bit seed from the clock, the process id and an address: different per emitter and
/// per process, which is all ids and jitter need.
pub(crate) fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    let address = &local as *const u8 as u64;
    splitmix(
        nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ address.rotate_left(17)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// One step of SplitMix64: a good 64-bit mix, used as a small PRNG.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Makes message ids `msg_` + 13 base32 characters of a per-emitter random prefix + 13 of a
/// counter: unique within an emitter, and across emitters with overwhelming probability.
#[derive(Debug)]
pub(crate) struct IdGenerator {
    prefix: u64,
    next: AtomicU64,
}

const BASE32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

impl IdGenerator {
    pub(crate) fn new() -> Self {
        IdGenerator {
            prefix: seed(),
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_id(&self) -> MessageId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 4 + 26];
        buf[..4].copy_from_slice(b"msg_");
        for (i, value) in [self.prefix, n].into_iter().enumerate() {
            let mut v = value;
            for j in (0..13).rev() {
                buf[4 + i * 13 + j] = BASE32[(v & 31) as usize];
                v >>= 5;
            }
        }
        // The buffer holds only ASCII.
        MessageId(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rfc3339(secs: u64, micros: u32) -> String {
        let mut s = String::new();
        let at = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into());
        push_rfc3339(&mut s, at);
        s
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1614265330, 42), "2021-02-25T15:02:10.000042Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            rfc3339(4_102_444_799, 999_999),
            "2099-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn body_is_the_standard_envelope_and_valid_json() {
        let e = Event::new(
            MessageId("msg_1".into()),
            "user.\"created\"\n",
            r#"{"n":[1,2]}"#,
            UNIX_EPOCH + Duration::from_secs(1614265330),
        );
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(v["type"], "user.\"created\"\n");
        assert_eq!(v["timestamp"], "2021-02-25T15:02:10.000000Z");
        assert_eq!(v["data"]["n"][1], 2);
        assert_eq!(v.as_object().unwrap().len(), 3);
        let ctl = Event::new(MessageId("m".into()), "\u{1}", "null", UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&ctl.body).unwrap();
        assert_eq!(v["type"], "\u{1}");
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let a = IdGenerator::new();
        let b = IdGenerator::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            for g in [&a, &b] {
                let id = g.next_id();
                assert_eq!(id.as_str().len(), 30);
                assert!(id.as_str().starts_with("msg_"));
                assert!(seen.insert(id));
            }
        }
    }
}
