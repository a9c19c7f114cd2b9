//! Standard Webhooks signatures (v1.0.0): `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body"))
//! with the key decoded from a `whsec_` secret.
//!
//! During a secret rotation the sender signs with the old and the new secret and sends both
//! signatures, space-separated, so that receivers holding either one accept the message.

use std::fmt;

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Standard base64 that decodes with or without padding (the reference libraries accept
/// both), and encodes with padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How far a receiver lets a `webhook-timestamp` drift from its clock (the spec's 5 min).
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// A signing key, decoded from its `whsec_<base64>` text form.
///
/// `Debug` does not print the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

/// Why a secret's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// The text does not start with `whsec_`.
    MissingPrefix,
    /// What follows `whsec_` is not standard base64.
    NotBase64,
    /// The key is empty.
    Empty,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretError::MissingPrefix => "webhook secret must start with whsec_",
            SecretError::NotBase64 => "webhook secret: what follows whsec_ is not base64",
            SecretError::Empty => "webhook secret is empty",
        })
    }
}

impl std::error::Error for SecretError {}

impl Secret {
    /// Parses `whsec_<base64 key>`.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        Secret::from_key(key)
    }

    /// A secret from raw key bytes.
    pub fn from_key(key: impl Into<Vec<u8>>) -> Result<Secret, SecretError> {
        let key = key.into();
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret { key })
    }

    /// A fresh random 24-byte secret (the size Svix generates) from the operating
    /// system's random source.
    ///
    /// # Panics
    /// If the operating system has no random source to give (a weak key would be worse
    /// than no key).
    pub fn generate() -> Secret {
        let mut key = vec![0u8; 24];
        if let Err(e) = getrandom::getrandom(&mut key) {
            panic!("no operating-system random source for a webhook secret: {e}");
        }
        Secret { key }
    }

    /// The `whsec_<base64>` text form.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// The HMAC-SHA256 state over `id.timestamp.body`, not yet finalized.
    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            BASE64.encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.key.len())
    }
}

/// The `webhook-signature` header value: one `v1,` signature per secret, space-separated
/// (several during a rotation).
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut header = String::with_capacity(secrets.len() * 48);
    for (i, secret) in secrets.iter().enumerate() {
        if i > 0 {
            header.push(' ');
        }
        header.push_str(&secret.sign(id, timestamp, body));
    }
    header
}

/// Why [`verify`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// `webhook-timestamp` is not a Unix time in seconds.
    BadTimestamp,
    /// The timestamp is more than [`TIMESTAMP_TOLERANCE_SECS`] away from `now`.
    TimestampOutOfTolerance,
    /// No `v1` signature in the header matches any of the secrets.
    NoMatchingSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyError::BadTimestamp => "webhook-timestamp is not Unix seconds",
            VerifyError::TimestampOutOfTolerance => "webhook-timestamp too far from now",
            VerifyError::NoMatchingSignature => "no matching v1 signature",
        })
    }
}

impl std::error::Error for VerifyError {}

/// The receiver's check: `signature_header` holds a `v1` signature of `id.timestamp.body`
/// by one of `secrets`, and `timestamp` is within the tolerance of `now_unix`. Signatures
/// are compared in constant time.
pub fn verify(
    secrets: &[Secret],
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_unix: u64,
) -> Result<(), VerifyError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if ts.abs_diff(now_unix) > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    for secret in secrets {
        let mac = secret.mac(id, ts, body);
        for candidate in signature_header.split(' ') {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                continue;
            };
            let Ok(bytes) = BASE64.decode(encoded) else {
                continue;
            };
            if mac.clone().verify_slice(&bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector published with the Standard Webhooks reference libraries (and Svix's).
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: u64 = 1614265330;
    const VECTOR_BODY: &str = r#"{"test": 2432232314}"#;
    const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn published_vector_signs() {
        let s = Secret::parse(VECTOR_SECRET).unwrap();
        assert_eq!(
            s.sign(VECTOR_ID, VECTOR_TS, VECTOR_BODY.as_bytes()),
            VECTOR_SIG
        );
    }

    #[test]
    fn published_vector_verifies_and_tampering_fails() {
        let s = [Secret::parse(VECTOR_SECRET).unwrap()];
        let ts = VECTOR_TS.to_string();
        let body = VECTOR_BODY.as_bytes();
        assert_eq!(
            verify(&s, VECTOR_ID, &ts, VECTOR_SIG, body, VECTOR_TS),
            Ok(())
        );
        let other_body = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(&s, VECTOR_ID, &ts, VECTOR_SIG, other_body, VECTOR_TS),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            verify(&s, "msg_other", &ts, VECTOR_SIG, body, VECTOR_TS),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            verify(&s, VECTOR_ID, &ts, VECTOR_SIG, body, VECTOR_TS + 301),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(&s, VECTOR_ID, "soon", VECTOR_SIG, body, VECTOR_TS),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(&s, VECTOR_ID, &ts, "v2,abc v1,!!!", body, VECTOR_TS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn rotation_sends_one_signature_per_secret_and_either_verifies() {
        let old = Secret::parse(VECTOR_SECRET).unwrap();
        let new = Secret::generate();
        let header = signature_header(
            &[old.clone(), new.clone()],
            VECTOR_ID,
            VECTOR_TS,
            VECTOR_BODY.as_bytes(),
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], VECTOR_SIG);
        let ts = VECTOR_TS.to_string();
        for receiver in [old, new] {
            verify(
                &[receiver],
                VECTOR_ID,
                &ts,
                &header,
                VECTOR_BODY.as_bytes(),
                VECTOR_TS,
            )
            .unwrap();
        }
        let stranger = Secret::generate();
        assert!(verify(
            &[stranger],
            VECTOR_ID,
            &ts,
            &header,
            VECTOR_BODY.as_bytes(),
            VECTOR_TS
        )
        .is_err());
    }

    #[test]
    fn secrets_parse_strictly_and_round_trip() {
        assert_eq!(Secret::parse("MfKQ9r8G"), Err(SecretError::MissingPrefix));
        assert_eq!(Secret::parse("whsec_%%%"), Err(SecretError::NotBase64));
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Empty));
        // Unpadded base64 is accepted, as by the reference libraries.
        let padded = Secret::parse("whsec_YWJjZA==").unwrap();
        assert_eq!(Secret::parse("whsec_YWJjZA").unwrap(), padded);
        assert_eq!(padded.to_whsec(), "whsec_YWJjZA==");
        let g = Secret::generate();
        assert_eq!(Secret::parse(&g.to_whsec()).unwrap(), g);
        assert!(!format!("{g:?}").contains(&g.to_whsec()[6..]));
    }
}
