//! Bearer-token guards for the internal (service-to-service) and admin APIs: 401 without a
//! token, 403 with a wrong one, compared in constant time.

use axum::{
    extract::Request,
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{Problem, Secret};

/// Checks `Authorization: Bearer <token>` against `expected`.
pub fn check_bearer(request: &Request, expected: &Secret) -> Result<(), Problem> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(Problem::unauthorized)?;
    if constant_time_eq(presented.trim().as_bytes(), expected.expose().as_bytes())
        && !expected.expose().is_empty()
    {
        Ok(())
    } else {
        Err(Problem::forbidden())
    }
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

/// Equality whose time depends only on the lengths, not on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
    }
}
