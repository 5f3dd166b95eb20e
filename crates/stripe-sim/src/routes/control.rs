//! `/_sim/…`: the control API for tests and local runs (JSON in and out, no auth).
//!
//! It sets faults and delivery modes, shows what was emitted and delivered, resets state, and
//! makes the changes Stripe makes on its own (3-D Secure answers, settlements, disputes).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::cards::Decline;
use crate::controls::{Controls, ControlsUpdate};
use crate::error::ApiError;
use crate::form::Params;
use crate::ledger::AuthenticationOutcome;
use crate::objects::RequestRef;
use crate::sim::Sim;

/// The control routes, relative to `/_sim`.
pub fn router() -> Router<Sim> {
    Router::new()
        .route("/controls", get(controls).post(update_controls))
        .route("/webhook_endpoints", get(endpoints).put(set_endpoints))
        .route("/webhooks/flush", post(flush))
        .route("/events", get(events))
        .route("/events/{id}", get(event))
        .route("/events/{id}/resend", post(resend))
        .route("/deliveries", get(deliveries))
        .route("/reset", post(reset))
        .route("/payment_intents", get(payment_intents))
        .route("/payment_intents/{id}/authenticate", post(authenticate))
        .route("/payment_intents/{id}/processing", post(processing))
        .route("/payment_intents/{id}/succeed", post(succeed))
        .route("/payment_intents/{id}/fail", post(fail))
        .route("/payment_intents/{id}/dispute", post(dispute))
}

/// Parses a JSON body; an empty body means all defaults.
fn json_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("Invalid JSON body: {e}")))
}

async fn controls(State(sim): State<Sim>) -> Json<Controls> {
    Json(sim.controls())
}

async fn update_controls(State(sim): State<Sim>, body: Bytes) -> Result<Json<Controls>, ApiError> {
    let update: ControlsUpdate = json_body(&body)?;
    sim.update_controls(&update)
        .map(Json)
        .map_err(ApiError::invalid_request)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Endpoints {
    urls: Vec<String>,
}

async fn endpoints(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({ "urls": sim.webhook_endpoints() }))
}

async fn set_endpoints(State(sim): State<Sim>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let Endpoints { urls } = json_body(&body)?;
    if let Some(bad) = urls
        .iter()
        .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(ApiError::invalid_param(
            "urls",
            format!("{bad:?} is not an http(s) URL"),
        ));
    }
    sim.set_webhook_endpoints(urls);
    Ok(Json(json!({ "urls": sim.webhook_endpoints() })))
}

async fn flush(State(sim): State<Sim>) -> StatusCode {
    sim.flush_webhooks();
    StatusCode::NO_CONTENT
}

/// Events in emission order, optionally filtered by `type` and by `object_id` (the id of
/// `data.object`).
async fn events(State(sim): State<Sim>, RawQuery(query): RawQuery) -> Json<Value> {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let kind = params.str("type");
    let object_id = params.str("object_id");
    let data: Vec<Value> = sim
        .events()
        .into_iter()
        .filter(|e| kind.is_none_or(|k| e["type"] == k))
        .filter(|e| object_id.is_none_or(|id| e["data"]["object"]["id"] == id))
        .collect();
    Json(json!({ "object": "list", "data": data, "has_more": false, "url": "/_sim/events" }))
}

async fn event(State(sim): State<Sim>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    sim.events()
        .into_iter()
        .find(|e| e["id"] == id.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::resource_missing("event", &id, "id"))
}

async fn resend(State(sim): State<Sim>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if sim.resend_event(&id) {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::resource_missing("event", &id, "id"))
    }
}

/// Delivery attempts in the order they ended, optionally filtered by `event_id`.
async fn deliveries(State(sim): State<Sim>, RawQuery(query): RawQuery) -> Json<Value> {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let event_id = params.str("event_id");
    let data: Vec<_> = sim
        .deliveries()
        .into_iter()
        .filter(|d| event_id.is_none_or(|id| d.event_id == id))
        .collect();
    Json(json!({ "data": data }))
}

/// Every PaymentIntent with the money it moved (see [`Sim::payment_intents`]), optionally only
/// those whose metadata holds each `metadata[key]=value` of the query.
async fn payment_intents(
    State(sim): State<Sim>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = query.unwrap_or_default();
    let params = Params::parse(query.as_bytes());
    params.reject_unknown(&["metadata"])?;
    let data = sim.payment_intents(&params.map("metadata"));
    Ok(Json(
        json!({ "object": "list", "data": data, "has_more": false, "url": "/_sim/payment_intents" }),
    ))
}

async fn reset(State(sim): State<Sim>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Authentication {
    /// `succeed` (default) or `fail`.
    outcome: Option<String>,
}

async fn authenticate(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Authentication { outcome } = json_body(&body)?;
    let outcome = match outcome.as_deref() {
        None | Some("succeed") => AuthenticationOutcome::Succeed,
        Some("fail") => AuthenticationOutcome::Fail,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "outcome",
                format!("outcome must be \"succeed\" or \"fail\", not {other:?}"),
            ));
        }
    };
    sim.transact(&RequestRef::default(), |ledger, changes| {
        ledger.authenticate(&id, outcome, changes)
    })
    .map(Json)
}

async fn processing(
    State(sim): State<Sim>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    sim.transact(&RequestRef::default(), |ledger, changes| {
        ledger.start_processing(&id, changes)
    })
    .map(Json)
}

async fn succeed(State(sim): State<Sim>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    sim.transact(&RequestRef::default(), |ledger, changes| {
        ledger.force_success(&id, changes)
    })
    .map(Json)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Failure {
    /// A decline code of a test card, e.g. `insufficient_funds`; `generic_decline` by default.
    decline_code: Option<String>,
}

async fn fail(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Failure { decline_code } = json_body(&body)?;
    let decline = match decline_code.as_deref() {
        None => Decline::GENERIC,
        Some(code) => Decline::from_code(code).ok_or_else(|| {
            ApiError::invalid_param("decline_code", format!("Unknown decline_code {code:?}"))
        })?,
    };
    sim.transact(&RequestRef::default(), |ledger, changes| {
        ledger.force_failure(&id, decline, changes)
    })
    .map(Json)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisputeRequest {
    /// Stripe's dispute reason; `fraudulent` by default.
    reason: Option<String>,
}

async fn dispute(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let DisputeRequest { reason } = json_body(&body)?;
    let reason = reason.unwrap_or_else(|| "fraudulent".to_owned());
    sim.transact(&RequestRef::default(), |ledger, changes| {
        ledger.open_dispute(&id, &reason, changes)
    })
    .map(Json)
}
