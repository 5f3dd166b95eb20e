//! Verifying Stripe's `Stripe-Signature` header over the raw request body: an HMAC-SHA256
//! of `"{t}.{body}"` under any configured secret (so a secret can be rotated) must equal one
//! of the header's `v1` entries, compared in constant time, and `t` must be recent.

use std::time::Duration;

use common::{Secret, auth::constant_time_eq};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// Why a webhook was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("the Stripe-Signature header is missing")]
    Missing,
    /// The header has no timestamp or no `v1` signature.
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    /// No `v1` signature matches the body under any secret.
    #[error("no signature matches the body")]
    Mismatch,
    /// The signature is valid but its timestamp is outside the tolerance (a replay).
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
}

impl SignatureError {
    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::Malformed => "malformed",
            SignatureError::Mismatch => "mismatch",
            SignatureError::Stale => "stale",
        }
    }
}

/// Checks signatures against the configured secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

/// The parts of a `Stripe-Signature` header that matter.
struct Header<'a> {
    timestamp: &'a str,
    seconds: i64,
    signatures: Vec<[u8; 32]>,
}

fn parse(header: &str) -> Result<Header<'_>, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" if timestamp.is_none() => timestamp = Some(value.trim()),
            "t" => return Err(SignatureError::Malformed),
            "v1" => {
                let mut signature = [0u8; 32];
                // An entry that is not a SHA-256 in hex cannot match; others may.
                if hex::decode_to_slice(value.trim(), &mut signature).is_ok() {
                    signatures.push(signature);
                }
            }
            // `v0` (test mode, SHA-1) and unknown schemes are ignored, as Stripe's libraries do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    let seconds = timestamp
        .parse::<i64>()
        .map_err(|_| SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    Ok(Header {
        timestamp,
        seconds,
        signatures,
    })
}

impl Verifier {
    /// A verifier accepting any of `secrets`, with timestamps within `tolerance` of now.
    pub fn new(secrets: Vec<Secret>, tolerance: Duration) -> Self {
        Self { secrets, tolerance }
    }

    /// Checks `header` against `body` at `now` (Unix seconds).
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let header = parse(header.ok_or(SignatureError::Missing)?)?;
        let matched = self.secrets.iter().any(|secret| {
            let expected = sign(secret.expose(), header.timestamp, body);
            header
                .signatures
                .iter()
                // Every candidate is compared in full: the time taken says nothing about
                // which one came close.
                .fold(false, |hit, candidate| {
                    constant_time_eq(&expected, candidate) | hit
                })
        });
        if !matched {
            return Err(SignatureError::Mismatch);
        }
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if now.abs_diff(header.seconds) > tolerance.unsigned_abs() {
            return Err(SignatureError::Stale);
        }
        Ok(())
    }
}

/// HMAC-SHA256 of `"{timestamp}.{body}"` keyed with the whole secret, as Stripe signs.
fn sign(secret: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1"}"#;
    // Python: hmac.new(b"whsec_test", b'1700000000.{"id":"evt_1"}', hashlib.sha256)
    const GOOD: &str = "c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925";
    const NOW: i64 = 1_700_000_100;

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(
            secrets.iter().map(|s| Secret::new(*s)).collect(),
            Duration::from_secs(300),
        )
    }

    #[test]
    fn matches_an_independently_computed_signature() {
        let header = format!("t=1700000000,v1={GOOD}");
        assert_eq!(
            verifier(&["whsec_test"]).verify(Some(&header), BODY, NOW),
            Ok(())
        );
    }

    #[test]
    fn any_secret_and_any_v1_entry_may_match() {
        let header = format!("t=1700000000,v1={},v1={GOOD},v0=abc", "0".repeat(64));
        let v = verifier(&["whsec_old", "whsec_test"]);
        assert_eq!(v.verify(Some(&header), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_changed_body_or_another_secret_does_not_match() {
        let header = format!("t=1700000000,v1={GOOD}");
        let v = verifier(&["whsec_test"]);
        assert_eq!(
            v.verify(Some(&header), br#"{"id":"evt_2"}"#, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verifier(&["whsec_other"]).verify(Some(&header), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_future_timestamps_are_refused() {
        let header = format!("t=1700000000,v1={GOOD}");
        let v = verifier(&["whsec_test"]);
        assert_eq!(
            v.verify(Some(&header), BODY, 1_700_000_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v.verify(Some(&header), BODY, 1_699_999_699),
            Err(SignatureError::Stale)
        );
        assert_eq!(v.verify(Some(&header), BODY, 1_700_000_300), Ok(()));
    }

    #[test]
    fn garbled_headers_are_malformed() {
        let v = verifier(&["whsec_test"]);
        assert_eq!(v.verify(None, BODY, NOW), Err(SignatureError::Missing));
        for garbled in [
            "",
            "nonsense",
            "t=1700000000",
            &format!("v1={GOOD}"),
            &format!("t=soon,v1={GOOD}"),
            &format!("t=1,t=2,v1={GOOD}"),
            "t=1700000000,v1=not-hex",
        ] {
            assert_eq!(
                v.verify(Some(garbled), BODY, NOW),
                Err(SignatureError::Malformed),
                "{garbled}"
            );
        }
    }
}
