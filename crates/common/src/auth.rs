//! Bearer-token guards for the internal (service-to-service) and admin APIs: 401 without a
//! token, 403 with a wrong one. Tokens are compared as SHA-256 digests in constant time, so
//! neither where a guess first differs nor how long the real token is shows in the timing.
//! A secret may hold several comma-separated tokens: during a rotation the receiving side
//! accepts the new and the old, and a sender sends the first.

use axum::{
    extract::Request,
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::{Problem, Secret};

/// The token of `Authorization: Bearer <token>`, if the request carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Checks `Authorization: Bearer <token>` against `expected`; an empty `expected` accepts
/// nothing.
pub fn check_bearer(request: &Request, expected: &Secret) -> Result<(), Problem> {
    let presented = bearer(request.headers()).ok_or_else(Problem::unauthorized)?;
    if token_matches(presented, expected) {
        Ok(())
    } else {
        Err(Problem::forbidden())
    }
}

/// Whether `presented` is one of the comma-separated tokens of `expected` (never an empty
/// one). Every token is compared, whichever matches, and each comparison's time depends on
/// neither value's content nor length.
pub fn token_matches(presented: &str, expected: &Secret) -> bool {
    tokens(expected).fold(false, |found, token| {
        found | constant_time_eq(presented.as_bytes(), token.as_bytes())
    })
}

/// The tokens `secret` holds, in order.
fn tokens(secret: &Secret) -> impl Iterator<Item = &str> {
    secret
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The token to send from `secret`: its first (the newest, during a rotation).
pub fn outgoing(secret: &Secret) -> &str {
    tokens(secret).next().unwrap_or_default()
}

/// Middleware requiring the bearer token; use with `axum::middleware::from_fn_with_state`.
pub async fn require_bearer(
    axum::extract::State(expected): axum::extract::State<Secret>,
    request: Request,
    next: Next,
) -> Response {
    match check_bearer(&request, &expected) {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

/// Equality of two byte strings in constant time: both are hashed to fixed-length digests
/// first, so a length mismatch is no early return, and the digests are compared without a
/// data-dependent branch.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(!constant_time_eq(b"", b"token"));
    }

    #[test]
    fn during_a_rotation_either_token_is_accepted_and_the_first_is_sent() {
        let both = Secret::new("new-token-0123456789, old-token-0123456789");
        assert!(token_matches("new-token-0123456789", &both));
        assert!(token_matches("old-token-0123456789", &both));
        assert!(!token_matches(
            "new-token-0123456789, old-token-0123456789",
            &both
        ));
        assert!(!token_matches("", &both));
        assert_eq!(outgoing(&both), "new-token-0123456789");
        assert_eq!(outgoing(&Secret::new("only")), "only");
    }

    #[test]
    fn an_empty_secret_matches_nothing() {
        assert!(!token_matches("", &Secret::new("")));
        assert!(token_matches("a-token", &Secret::new("a-token")));
        assert!(!token_matches("a-token", &Secret::new("a-tokens")));
    }
}
