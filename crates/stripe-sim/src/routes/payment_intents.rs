//! `/v1/payment_intents`: create, retrieve, confirm, cancel, capture.
//!
//! Each handler turns Stripe's form parameters into a typed request once, here at the edge,
//! and hands it to the ledger.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::Value;

use super::RequestContext;
use crate::error::ApiError;
use crate::form::Params;
use crate::ledger::{ConfirmOptions, NewPaymentIntent};
use crate::money;
use crate::objects::CaptureMethod;
use crate::sim::Sim;

const CREATE_PARAMS: &[&str] = &[
    "amount",
    "automatic_payment_methods",
    "capture_method",
    "confirm",
    "confirmation_method",
    "currency",
    "customer",
    "description",
    "error_on_requires_action",
    "expand",
    "metadata",
    "off_session",
    "payment_method",
    "payment_method_options",
    "payment_method_types",
    "receipt_email",
    "return_url",
    "setup_future_usage",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "use_stripe_sdk",
];
const CONFIRM_PARAMS: &[&str] = &[
    "error_on_requires_action",
    "expand",
    "off_session",
    "payment_method",
    "payment_method_options",
    "receipt_email",
    "return_url",
    "use_stripe_sdk",
];
const CANCEL_PARAMS: &[&str] = &["cancellation_reason", "expand"];
const CAPTURE_PARAMS: &[&str] = &["amount_to_capture", "expand"];
const CANCELLATION_REASONS: &[&str] = &[
    "abandoned",
    "duplicate",
    "fraudulent",
    "requested_by_customer",
];

/// The PaymentIntent routes, relative to `/v1`.
pub fn router() -> Router<Sim> {
    Router::new()
        .route("/payment_intents", post(create))
        .route("/payment_intents/{id}", get(retrieve))
        .route("/payment_intents/{id}/confirm", post(confirm))
        .route("/payment_intents/{id}/cancel", post(cancel))
        .route("/payment_intents/{id}/capture", post(capture))
}

impl TryFrom<&Params> for NewPaymentIntent {
    type Error = ApiError;

    fn try_from(params: &Params) -> Result<Self, ApiError> {
        params.reject_unknown(CREATE_PARAMS)?;
        let amount = params
            .positive_int("amount")?
            .ok_or_else(|| ApiError::missing_param("amount"))?;
        let currency = money::parse_currency(params.required_str("currency")?)?;
        params.one_of("confirmation_method", &["automatic"])?;
        let capture_method = params
            .one_of("capture_method", &CaptureMethod::ALL)?
            .and_then(|raw| CaptureMethod::parse(&raw))
            .unwrap_or(CaptureMethod::Automatic);
        let mut payment_method_types = params.list("payment_method_types");
        if payment_method_types.is_empty() {
            payment_method_types.push("card".to_owned());
        }
        Ok(Self {
            amount,
            currency,
            metadata: params.metadata()?,
            description: params.str("description").map(str::to_owned),
            customer: params.str("customer").map(str::to_owned),
            payment_method: params.str("payment_method").map(str::to_owned),
            payment_method_types,
            automatic_payment_methods: params
                .bool("automatic_payment_methods[enabled]")?
                .unwrap_or(false),
            capture_method,
            confirm: params.bool("confirm")?.unwrap_or(false),
            error_on_requires_action: cannot_act(params)?,
            receipt_email: params.str("receipt_email").map(str::to_owned),
            statement_descriptor: params.str("statement_descriptor").map(str::to_owned),
            statement_descriptor_suffix: params
                .str("statement_descriptor_suffix")
                .map(str::to_owned),
            setup_future_usage: params
                .one_of("setup_future_usage", &["off_session", "on_session"])?,
        })
    }
}

impl TryFrom<&Params> for ConfirmOptions {
    type Error = ApiError;

    fn try_from(params: &Params) -> Result<Self, ApiError> {
        params.reject_unknown(CONFIRM_PARAMS)?;
        Ok(Self {
            payment_method: params.str("payment_method").map(str::to_owned),
            error_on_requires_action: cannot_act(params)?,
        })
    }
}

/// Whether the customer cannot answer a 3-D Secure challenge: `error_on_requires_action=true`
/// or an `off_session` payment.
fn cannot_act(params: &Params) -> Result<bool, ApiError> {
    let off_session = params.str("off_session").is_some_and(|v| v != "false");
    Ok(off_session || params.bool("error_on_requires_action")?.unwrap_or(false))
}

async fn create(
    State(sim): State<Sim>,
    Extension(context): Extension<RequestContext>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(&body);
    let new = NewPaymentIntent::try_from(&params)?;
    let json = sim.transact(&context.event_request(), |ledger, changes| {
        ledger.create_payment_intent(new, changes)
    })?;
    expanded(&sim, json, &params)
}

async fn retrieve(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    params.reject_unknown(&["client_secret", "expand"])?;
    let expand = params.list("expand");
    sim.read(|ledger| ledger.payment_intent_json(&id, &expand))
        .map(Json)
}

async fn confirm(
    State(sim): State<Sim>,
    Extension(context): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(&body);
    let options = ConfirmOptions::try_from(&params)?;
    let json = sim.transact(&context.event_request(), |ledger, changes| {
        ledger.confirm_payment_intent(&id, options, changes)
    })?;
    expanded(&sim, json, &params)
}

async fn cancel(
    State(sim): State<Sim>,
    Extension(context): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(&body);
    params.reject_unknown(CANCEL_PARAMS)?;
    let reason = params.one_of("cancellation_reason", CANCELLATION_REASONS)?;
    let json = sim.transact(&context.event_request(), |ledger, changes| {
        ledger.cancel_payment_intent(&id, reason, changes)
    })?;
    expanded(&sim, json, &params)
}

async fn capture(
    State(sim): State<Sim>,
    Extension(context): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(&body);
    params.reject_unknown(CAPTURE_PARAMS)?;
    let amount = params.positive_int("amount_to_capture")?;
    let json = sim.transact(&context.event_request(), |ledger, changes| {
        ledger.capture_payment_intent(&id, amount, changes)
    })?;
    expanded(&sim, json, &params)
}

/// Applies `expand[]` (only `latest_charge` is supported) to a PaymentIntent response.
fn expanded(sim: &Sim, json: Value, params: &Params) -> Result<Json<Value>, ApiError> {
    let expand = params.list("expand");
    match json["id"].as_str() {
        Some(id) if !expand.is_empty() => sim
            .read(|ledger| ledger.payment_intent_json(id, &expand))
            .map(Json),
        _ => Ok(Json(json)),
    }
}
