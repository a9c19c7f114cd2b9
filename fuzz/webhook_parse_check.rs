// The checks of the `webhook_parse` fuzz target, shared (through `include!`) with the
// stable-toolchain smoke run in tests/fuzz_smoke.rs, so both exercise the same
// code: every text the webhook module parses from outside (dead-letter files, secrets,
// retry schedules, signature headers).

use volley::webhook::{parse_dead_letters, verify, RetrySchedule, Secret};

/// The whole check for one input; panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match mode % 4 {
        0 => dead_letters(rest),
        1 => secret(&text),
        2 => schedule(&text),
        _ => signature(&text),
    }
}

/// Whatever parses re-serializes to something that parses to the same letters.
fn dead_letters(bytes: &[u8]) {
    if let Ok(letters) = parse_dead_letters(bytes) {
        let mut text = Vec::new();
        for l in &letters {
            text.extend_from_slice(serde_json::to_string(l).unwrap().as_bytes());
            text.push(b'\n');
        }
        assert_eq!(parse_dead_letters(&text[..]).unwrap(), letters);
    }
}

fn secret(text: &str) {
    if let Ok(s) = Secret::parse(text) {
        assert_eq!(Secret::parse(&s.to_whsec()).unwrap(), s);
        let sig = s.sign("msg_1", 1_700_000_000, text.as_bytes());
        assert!(sig.starts_with("v1,"));
        verify(&[s], "msg_1", "1700000000", &sig, text.as_bytes(), 1_700_000_000).unwrap();
    }
}

fn schedule(text: &str) {
    if let Ok(s) = RetrySchedule::parse(text) {
        assert!(s.attempts() >= 1);
        for attempt in 1..=s.attempts().min(64) {
            let base = s.delays()[attempt as usize - 1];
            let d = s.delay_before(attempt, u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15)).unwrap();
            assert!(d <= base.mul_f64(1.2) + std::time::Duration::from_nanos(1));
        }
        assert!(s.delay_before(s.attempts() + 1, 0).is_none());
    }
}

/// A hostile `webhook-signature` / timestamp never panics and never verifies without the
/// key's signature in it.
fn signature(text: &str) {
    let key = Secret::from_key(b"fuzz key".to_vec()).unwrap();
    let (timestamp, header) = text.split_once('\n').unwrap_or(("1700000000", text));
    let genuine = key.sign("msg_1", 1_700_000_000, b"body");
    let result = verify(&[key], "msg_1", timestamp, header, b"body", 1_700_000_000);
    if result.is_ok() {
        // Only the genuine signature (padding aside: both forms decode) verifies.
        let genuine = genuine.trim_end_matches('=');
        assert!(
            header.split(' ').any(|c| c.trim_end_matches('=') == genuine),
            "{header:?} verified without the signature"
        );
    }
}
