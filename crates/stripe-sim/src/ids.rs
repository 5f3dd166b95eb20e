//! Object ids, timestamps and chance, shaped like Stripe's.
//!
//! Ids are a Stripe prefix (`pi_`, `ch_`, `evt_`, …) plus 24 base-62 characters from the OS
//! random source, so they look and sort like real ones and never collide in practice.

use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh id such as `pi_3QxZ…` for the given prefix (without the underscore).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_token(24))
}

/// `len` random base-62 characters.
pub fn random_token(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the OS random source is available");
        // 248 = 62 * 4: rejecting larger bytes keeps every character equally likely.
        for byte in buf.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*byte % 62)]));
        }
    }
    out
}

/// A uniformly distributed number in `[0, 1)`.
pub fn chance() -> f64 {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    // 53 random bits fill an f64 mantissa exactly.
    (u64::from_le_bytes(buf) >> 11) as f64 / (1u64 << 53) as f64
}

/// Seconds since the Unix epoch, as Stripe's `created` fields carry.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_24_characters() {
        let id = new_id("pi");
        assert!(id.starts_with("pi_"));
        assert_eq!(id.len(), 27);
        assert!(id[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(new_id("pi"), id);
    }

    #[test]
    fn chance_stays_in_the_unit_interval() {
        for _ in 0..1000 {
            let x = chance();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
