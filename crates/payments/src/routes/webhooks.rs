//! `POST /v1/webhooks/stripe`: Stripe's events come in here. The signature is checked over
//! the raw body before anything is parsed; a verified event of a handled type is recorded
//! with its processing job (through the group-commit intake) and acknowledged, and the work
//! happens in the worker. Nothing is stored for a bad signature or a body that is not JSON.

use axum::{Json, Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use common::{Problem, problem::ProblemType};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::{
    AppState,
    events::{self, Envelope},
    intake::Recorded,
    store::events::Incoming,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/webhooks/stripe", post(receive))
}

fn outcome(kind: &str, result: &'static str) {
    metrics::counter!("payments_webhook_events_total", "type" => kind.to_owned(), "result" => result)
        .increment(1);
}

/// Receives one Stripe event.
#[utoipa::path(
    post, path = "/v1/webhooks/stripe", tag = "webhooks",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256>`; several v1 entries allowed")),
    request_body(content = Object, description = "A Stripe event, exactly as Stripe sent it"),
    responses(
        (status = 200, description = "Received (recorded, a duplicate, or a type payments does not act on)", body = Object),
        (status = 400, description = "Missing, malformed, stale or forged signature, or a body that is not an event", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The event could not be recorded; Stripe will send it again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    // A header that is not text is as good as garbled.
    let signature = headers
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or_default());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if let Err(e) = app.verifier.verify(signature, &body, now) {
        metrics::counter!("payments_webhook_signature_failures_total", "reason" => e.as_str())
            .increment(1);
        tracing::warn!(reason = e.as_str(), "webhook refused: bad signature");
        return Err(Problem::new(ProblemType::InvalidSignature).detail(e.to_string()));
    }
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| {
        outcome("unparsed", "malformed");
        Problem::new(ProblemType::MalformedEvent).detail(e.to_string())
    })?;
    let effect = events::is_handled(&envelope.kind)
        .then(|| envelope.effect())
        .flatten();
    let Some(effect) = effect else {
        outcome(&envelope.kind, "ignored");
        return Ok(Json(json!({"received": true, "handled": false})));
    };
    let incoming = Incoming {
        id: envelope.id,
        kind: envelope.kind,
        created: envelope.created,
        effect,
        copies: 1,
    };
    let kind = incoming.kind.clone();
    match app.intake.record(incoming).await {
        Ok(Recorded::New) => {
            outcome(&kind, "accepted");
            Ok(Json(json!({"received": true})))
        }
        Ok(Recorded::Duplicate) => {
            outcome(&kind, "duplicate");
            Ok(Json(json!({"received": true, "duplicate": true})))
        }
        Err(e) => {
            outcome(&kind, "error");
            Err(Problem::unavailable("The event store", &e))
        }
    }
}
