//! Request handling shared by every `/v1` endpoint: request ids and API version, API-key
//! authentication, and injected faults.
//!
//! Layered outermost first: context → auth → idempotency → faults → handler, so injected
//! latency runs inside the idempotency window and an injected 500 keeps no key.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::idempotency::{LostResponse, StoredResponse, is_kept};
use crate::objects::RequestRef;
use crate::sim::Sim;
use crate::{API_VERSION, ids};

/// Per-request facts handlers need: the id Stripe would log it under and its idempotency key.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `req_…`, also sent back as `Request-Id`.
    pub request_id: String,
    /// The `Idempotency-Key` header, if any.
    pub idempotency_key: Option<String>,
}

impl RequestContext {
    /// The `request` block of events this request causes.
    pub fn event_request(&self) -> RequestRef {
        RequestRef {
            id: Some(self.request_id.clone()),
            idempotency_key: self.idempotency_key.clone(),
        }
    }
}

/// Assigns the request id, checks and echoes `Stripe-Version`.
pub async fn context(mut request: Request, next: Next) -> Response {
    let request_id = ids::new_id("req");
    let headers = request.headers();
    let version = header_str(headers, "stripe-version")
        .unwrap_or(API_VERSION)
        .to_owned();
    let idempotency_key = header_str(headers, "idempotency-key").map(str::to_owned);
    let context = RequestContext {
        request_id: request_id.clone(),
        idempotency_key,
    };
    request.extensions_mut().insert(context.clone());

    let mut response = if is_api_version(&version) {
        next.run(request).await
    } else {
        ApiError::invalid_request(format!("Invalid Stripe API version: {version}")).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&version) {
        headers.insert("stripe-version", value);
    }
    if let Some(value) = context
        .idempotency_key
        .and_then(|k| HeaderValue::from_str(&k).ok())
    {
        headers.insert("idempotency-key", value);
    }
    response
}

/// Requires `Authorization: Bearer sk_test_…` (or exactly `SIM_API_KEY` when set).
pub async fn auth(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    match check_api_key(sim.api_key(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(err) => {
            let mut response = err.into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"Stripe\""),
            );
            response
        }
    }
}

/// Adds latency, fails a share of calls before they run, and loses a share of responses.
pub async fn faults(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let controls = sim.controls();
    if controls.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(controls.latency_ms)).await;
    }
    if ids::chance() < controls.failure_share {
        tracing::debug!(path = %request.uri().path(), "injected api_error");
        return ApiError::internal().into_response();
    }
    let request_id = request
        .extensions()
        .get::<RequestContext>()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let response = next.run(request).await;
    if !is_kept(response.status()) || ids::chance() >= controls.lost_response_share {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal().into_response();
    };
    tracing::debug!(request_id, "injected lost response");
    let mut lost = ApiError::internal().into_response();
    lost.extensions_mut().insert(LostResponse(StoredResponse {
        status: parts.status,
        body,
        request_id,
    }));
    lost
}

/// Answers paths Stripe does not serve the way Stripe does.
pub async fn unrecognized(request: Request<Body>) -> Response {
    let path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(
            || request.uri().path().to_owned(),
            |uri| uri.path().to_owned(),
        );
    ApiError::unrecognized_url(request.method().as_str(), &path).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `YYYY-MM-DD` with an optional `.release` suffix, e.g. `2026-09-30.endive`.
fn is_api_version(version: &str) -> bool {
    let (date, release) = version.split_once('.').unwrap_or((version, "a"));
    let parts: Vec<&str> = date.split('-').collect();
    parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_digit()))
        && !release.is_empty()
        && release
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_api_key(expected: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let missing = || {
        ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or \
             we can help at https://support.stripe.com/.",
        )
    };
    let raw = header_str(headers, header::AUTHORIZATION.as_str()).ok_or_else(missing)?;
    let key = match raw.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => return Err(missing()),
    };
    let accepted = match expected {
        Some(expected) => key == expected,
        None => {
            (key.starts_with("sk_test_") || key.starts_with("rk_test_"))
                && key.len() > "sk_test_".len()
        }
    };
    if accepted {
        Ok(())
    } else {
        Err(ApiError::unauthorized(format!(
            "Invalid API Key provided: {}",
            redact(key)
        )))
    }
}

/// `sk_test_****…1234`, as Stripe quotes a rejected key.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_recognised() {
        assert!(is_api_version("2026-09-30.endive"));
        assert!(is_api_version("2024-06-20"));
        assert!(!is_api_version("latest"));
        assert!(!is_api_version("2024-6-20"));
    }

    #[test]
    fn rejected_keys_are_quoted_redacted() {
        assert_eq!(redact("sk_live_abcdefgh1234"), "sk_live_********1234");
        assert_eq!(redact("short"), "*****");
    }

    #[test]
    fn only_test_mode_secret_keys_are_accepted() {
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        assert!(check_api_key(None, &headers("Bearer sk_test_123")).is_ok());
        assert!(check_api_key(None, &headers("Bearer sk_live_123")).is_err());
        assert!(check_api_key(None, &headers("Basic abc")).is_err());
        assert!(check_api_key(None, &HeaderMap::new()).is_err());
        assert!(check_api_key(Some("sk_test_a"), &headers("Bearer sk_test_b")).is_err());
    }
}
