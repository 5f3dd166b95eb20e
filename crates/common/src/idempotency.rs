//! The HTTP side of `Idempotency-Key`: reading the key a client sent, and answering a created
//! resource the same way on the first request and on its replays.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The request's `Idempotency-Key`, trimmed; `None` when it is missing, empty, longer than
/// `MAX_KEY_LEN` or not printable ASCII.
pub fn key(headers: &HeaderMap) -> Option<&str> {
    let key = headers.get("idempotency-key")?.to_str().ok()?.trim();
    let valid =
        !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some(key)
}

/// `body` with `status`, `Location: location`, and `Idempotent-Replayed: true` when it repeats
/// the answer to an earlier request with the same key.
pub fn created(
    status: StatusCode,
    location: &str,
    replayed: bool,
    body: impl IntoResponse,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", HeaderValue::from_str(key).unwrap());
        headers
    }

    #[test]
    fn keys_are_trimmed_and_bounded() {
        assert_eq!(key(&headers(" abc-1 ")), Some("abc-1"));
        assert_eq!(key(&headers("")), None);
        assert_eq!(key(&headers("has space")), None);
        assert_eq!(
            key(&headers(&"k".repeat(MAX_KEY_LEN))).map(str::len),
            Some(MAX_KEY_LEN)
        );
        assert_eq!(key(&headers(&"k".repeat(MAX_KEY_LEN + 1))), None);
        assert_eq!(key(&HeaderMap::new()), None);
    }

    #[test]
    fn a_replay_is_marked_and_located() {
        let response = created(StatusCode::ACCEPTED, "/v1/orders/ord_1", true, "{}");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()[header::LOCATION], "/v1/orders/ord_1");
        assert_eq!(response.headers()["idempotent-replayed"], "true");
        let first = created(StatusCode::CREATED, "/x", false, "{}");
        assert!(!first.headers().contains_key("idempotent-replayed"));
    }
}
