//! Prefixed random ids (`crt_…`, `ord_…`, `pay_…`). The prefix tells any router which system
//! minted an id; the 130 random bits make an id unguessable, so a cart id can be its own
//! access token.

/// Length of the random part: 26 base32 characters carry 130 bits.
pub const RANDOM_LEN: usize = 26;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A fresh id: `prefix`, an underscore and 26 lower-case Crockford base32 characters.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 17];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let mut out = String::with_capacity(prefix.len() + 1 + RANDOM_LEN);
    out.push_str(prefix);
    out.push('_');
    // 17 bytes = 136 bits; take 26 five-bit groups (130 bits).
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut bytes = bytes.iter();
    while out.len() < prefix.len() + 1 + RANDOM_LEN {
        if bits < 5 {
            acc = (acc << 8) | u32::from(*bytes.next().expect("enough random bytes"));
            bits += 8;
        }
        bits -= 5;
        out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
    }
    out
}

/// Whether `id` has this prefix and a well-formed random part.
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| rest.len() == RANDOM_LEN && rest.bytes().all(|b| ALPHABET.contains(&b)))
}

/// Text that is not an id of the kind wanted (from a row or a job: a bug, not a client's).
#[derive(Debug, thiserror::Error)]
#[error("not a well-formed {prefix}_ id: {raw:?}")]
pub struct MalformedId {
    /// The prefix wanted.
    pub prefix: &'static str,
    /// What was given.
    pub raw: String,
}

/// Defines a newtype id with its prefix, `new`, `parse`, `as_str`, `Display`,
/// `TryFrom<String>` (for `#[sqlx(try_from = "String")]` and job payloads) and serde both
/// ways (deserialising refuses a malformed id).
#[macro_export]
macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn new() -> Self {
                Self($crate::id::new_id($prefix))
            }

            /// The id, when `raw` is well-formed.
            pub fn parse(raw: &str) -> Option<Self> {
                $crate::id::is_valid($prefix, raw).then(|| Self(raw.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <String as serde::Deserialize>::deserialize(d)?;
                Self::try_from(raw).map_err(serde::de::Error::custom)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::id::MalformedId;

            fn try_from(raw: String) -> Result<Self, Self::Error> {
                if $crate::id::is_valid($prefix, &raw) {
                    Ok(Self(raw))
                } else {
                    Err($crate::id::MalformedId {
                        prefix: $prefix,
                        raw,
                    })
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_parse_back() {
        let id = new_id("crt");
        assert!(id.starts_with("crt_"));
        assert_eq!(id.len(), 4 + RANDOM_LEN);
        assert!(is_valid("crt", &id));
        assert!(!is_valid("ord", &id));
    }

    #[test]
    fn ids_do_not_repeat() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| new_id("x")).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "crt_",
            "crt_short",
            "crt_ILLEGAL-CHARACTERS-HERE-x",
            "crt0123456789abcdefghjkmnpqr",
            "",
        ] {
            assert!(!is_valid("crt", bad), "{bad}");
        }
    }
}
