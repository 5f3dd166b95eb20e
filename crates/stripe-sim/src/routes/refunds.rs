//! `/v1/refunds` (create, retrieve) and `/v1/charges/{id}` (retrieve, for reconciliation).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::Value;

use super::RequestContext;
use crate::error::ApiError;
use crate::form::Params;
use crate::ledger::{NewRefund, RefundTarget};
use crate::sim::Sim;

const CREATE_PARAMS: &[&str] = &[
    "amount",
    "charge",
    "expand",
    "metadata",
    "payment_intent",
    "reason",
];
const REASONS: &[&str] = &["duplicate", "fraudulent", "requested_by_customer"];

/// The refund and charge routes, relative to `/v1`.
pub fn router() -> Router<Sim> {
    Router::new()
        .route("/refunds", post(create))
        .route("/refunds/{id}", get(retrieve))
        .route("/charges/{id}", get(retrieve_charge))
}

impl TryFrom<&Params> for NewRefund {
    type Error = ApiError;

    fn try_from(params: &Params) -> Result<Self, ApiError> {
        params.reject_unknown(CREATE_PARAMS)?;
        let target = match (params.str("payment_intent"), params.str("charge")) {
            (Some(pi), None) => RefundTarget::PaymentIntent(pi.to_owned()),
            (None, Some(charge)) => RefundTarget::Charge(charge.to_owned()),
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_request(
                    "You cannot specify both a charge and a payment_intent.",
                ));
            }
            (None, None) => {
                return Err(ApiError::invalid_request(
                    "One of the following params should be provided for this request: \
                     payment_intent or charge.",
                ));
            }
        };
        Ok(Self {
            target,
            amount: params.positive_int("amount")?,
            metadata: params.metadata()?,
            reason: params.one_of("reason", REASONS)?,
        })
    }
}

async fn create(
    State(sim): State<Sim>,
    Extension(context): Extension<RequestContext>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let new = NewRefund::try_from(&Params::parse(&body))?;
    sim.transact(&context.event_request(), |ledger, changes| {
        ledger.create_refund(new, changes)
    })
    .map(Json)
}

async fn retrieve(State(sim): State<Sim>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    sim.read(|ledger| ledger.refund_json(&id)).map(Json)
}

async fn retrieve_charge(
    State(sim): State<Sim>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    sim.read(|ledger| ledger.charge_json(&id)).map(Json)
}
