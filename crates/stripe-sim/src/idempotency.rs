//! Stripe's `Idempotency-Key` semantics for POST requests.
//!
//! The first request with a key runs and, once the endpoint has produced an outcome (a 2xx
//! or a card decline), that response is kept for 24 hours: the same key with the same
//! parameters replays it (`Idempotent-Replayed: true`), with other parameters or another
//! endpoint it is a 400 `idempotency_error`, and while the first is still running a 409.
//! Rejected input and 5xx keep nothing, so a retry can still succeed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::form::Params;
use crate::routes::RequestContext;
use crate::sim::Sim;

/// How long a kept response can be replayed.
const KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest request body read.
const BODY_LIMIT: usize = 1 << 20;
/// Longest key Stripe accepts.
const MAX_KEY_LEN: usize = 255;

/// A response kept under an idempotency key.
#[derive(Debug, Clone)]
pub(crate) struct StoredResponse {
    pub status: StatusCode,
    pub body: Bytes,
    pub request_id: String,
}

/// The real outcome behind an injected "lost response" 500, for the key to keep.
#[derive(Debug, Clone)]
pub(crate) struct LostResponse(pub StoredResponse);

/// Whether Stripe keeps a response with this status under the request's key.
pub(crate) fn is_kept(status: StatusCode) -> bool {
    status.is_success() || status == StatusCode::PAYMENT_REQUIRED
}

#[derive(Debug)]
enum Entry {
    InFlight {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        response: StoredResponse,
        at: Instant,
    },
}

/// What to do with a request carrying a key.
#[derive(Debug)]
pub(crate) enum Claim {
    Run,
    Replay(StoredResponse),
    Mismatch,
    InFlight,
}

/// Keys seen, with their state.
#[derive(Debug, Default)]
pub(crate) struct IdempotencyTable {
    entries: HashMap<String, Entry>,
}

impl IdempotencyTable {
    /// Decides the fate of a request and, when it should run, marks the key in flight.
    pub(crate) fn claim(&mut self, key: &str, fingerprint: &str) -> Claim {
        let expired =
            matches!(self.entries.get(key), Some(Entry::Done { at, .. }) if at.elapsed() > KEY_TTL);
        if expired {
            self.entries.remove(key);
        }
        match self.entries.get(key) {
            Some(Entry::Done {
                fingerprint: f,
                response,
                ..
            }) if f == fingerprint => Claim::Replay(response.clone()),
            Some(Entry::InFlight { fingerprint: f }) if f == fingerprint => Claim::InFlight,
            Some(_) => Claim::Mismatch,
            None => {
                let fingerprint = fingerprint.to_owned();
                self.entries
                    .insert(key.to_owned(), Entry::InFlight { fingerprint });
                Claim::Run
            }
        }
    }

    /// Ends a run: keeps `response`, or frees the key when there is none.
    fn finish(&mut self, key: &str, response: Option<StoredResponse>) {
        let Some(Entry::InFlight { .. }) = self.entries.get(key) else {
            return;
        };
        match response {
            Some(response) => {
                let Some(Entry::InFlight { fingerprint }) = self.entries.remove(key) else {
                    return;
                };
                self.entries.insert(
                    key.to_owned(),
                    Entry::Done {
                        fingerprint,
                        response,
                        at: Instant::now(),
                    },
                );
            }
            None => {
                self.entries.remove(key);
            }
        }
    }

    /// Forgets every key.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Frees the key if the request never finishes (client gone, task dropped).
struct Reservation {
    sim: Sim,
    key: String,
    finished: bool,
}

impl Reservation {
    fn finish(&mut self, response: Option<StoredResponse>) {
        self.finished = true;
        self.sim.idempotency().finish(&self.key, response);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.finished {
            self.sim.idempotency().finish(&self.key, None);
        }
    }
}

/// Middleware applying idempotency to POST requests that carry a key.
pub(crate) async fn layer(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let context = request.extensions().get::<RequestContext>().cloned();
    let (Some(context), true) = (context, request.method() == Method::POST) else {
        return next.run(request).await;
    };
    let Some(key) = context.idempotency_key.clone() else {
        return next.run(request).await;
    };
    if key.len() > MAX_KEY_LEN {
        return ApiError::invalid_request(format!(
            "Idempotency keys can be at most {MAX_KEY_LEN} characters long."
        ))
        .into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::invalid_request("The request body could not be read.").into_response();
    };
    let fingerprint = format!(
        "{} {} {}",
        parts.method,
        parts.uri.path(),
        Params::parse(&bytes).fingerprint()
    );
    let claim = sim.idempotency().claim(&key, &fingerprint);
    match claim {
        Claim::Replay(stored) => replay(stored),
        Claim::Mismatch => ApiError::idempotency_mismatch(&key).into_response(),
        Claim::InFlight => ApiError::idempotency_in_flight(&key).into_response(),
        Claim::Run => {
            let mut reservation = Reservation {
                sim: sim.clone(),
                key,
                finished: false,
            };
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let (mut parts, body) = response.into_parts();
            if let Some(LostResponse(stored)) = parts.extensions.remove::<LostResponse>() {
                reservation.finish(Some(stored));
                return Response::from_parts(parts, body);
            }
            if !is_kept(parts.status) {
                reservation.finish(None);
                return Response::from_parts(parts, body);
            }
            let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
                return ApiError::internal().into_response();
            };
            reservation.finish(Some(StoredResponse {
                status: parts.status,
                body: bytes.clone(),
                request_id: context.request_id,
            }));
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = (stored.status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Ok(original) = HeaderValue::from_str(&stored.request_id) {
        headers.insert("original-request", original);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredResponse {
        StoredResponse {
            status: StatusCode::OK,
            body: Bytes::from_static(b"{}"),
            request_id: "req_1".into(),
        }
    }

    #[test]
    fn a_key_runs_once_then_replays() {
        let mut table = IdempotencyTable::default();
        assert!(matches!(table.claim("k", "a"), Claim::Run));
        assert!(matches!(table.claim("k", "a"), Claim::InFlight));
        table.finish("k", Some(stored()));
        assert!(matches!(table.claim("k", "a"), Claim::Replay(_)));
        assert!(matches!(table.claim("k", "b"), Claim::Mismatch));
    }

    #[test]
    fn a_run_without_an_outcome_frees_the_key() {
        let mut table = IdempotencyTable::default();
        assert!(matches!(table.claim("k", "a"), Claim::Run));
        table.finish("k", None);
        assert!(matches!(table.claim("k", "b"), Claim::Run));
    }
}
