//! Refunds: give back part or all of a captured charge, never more than remains.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::Value;

use super::{Changes, Ledger};
use crate::error::ApiError;
use crate::ids;
use crate::money;
use crate::objects::{ChargeStatus, EventType, Refund};

/// What a refund is taken from.
#[derive(Debug, Clone)]
pub enum RefundTarget {
    /// The latest successful charge of this PaymentIntent.
    PaymentIntent(String),
    /// This charge.
    Charge(String),
}

/// A validated `POST /v1/refunds`.
#[derive(Debug, Clone)]
pub struct NewRefund {
    /// What to refund.
    pub target: RefundTarget,
    /// Amount in minor units; everything that remains when `None`.
    pub amount: Option<i64>,
    /// Caller's key-value pairs.
    pub metadata: BTreeMap<String, String>,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    pub reason: Option<String>,
}

impl Ledger {
    /// Refunds a captured charge.
    pub fn create_refund(
        &mut self,
        new: NewRefund,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        let charge_id = self.refundable_charge(&new.target)?;
        let charge = self
            .charges
            .get_mut(&charge_id)
            .expect("refundable_charge checked it exists");
        if charge.disputed {
            return Err(ApiError::invalid_request(format!(
                "Charge {charge_id} has been charged back; cannot issue a refund."
            ))
            .with_code("charge_disputed"));
        }
        let remaining = charge.refundable();
        if remaining == 0 {
            return Err(ApiError::invalid_request(format!(
                "Charge {charge_id} has already been refunded."
            ))
            .with_code("charge_already_refunded"));
        }
        let amount = new.amount.unwrap_or(remaining);
        if amount > remaining {
            return Err(ApiError::invalid_param(
                "amount",
                format!(
                    "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                    money::format(amount, &charge.currency),
                    money::format(remaining, &charge.currency)
                ),
            )
            .with_code("amount_too_large"));
        }
        charge.amount_refunded += amount;
        let refund = Refund {
            id: ids::new_id("re"),
            amount,
            charge: charge_id.clone(),
            created: ids::now(),
            currency: charge.currency.clone(),
            metadata: new.metadata,
            payment_intent: charge.payment_intent.clone(),
            reason: new.reason,
            balance_transaction: ids::new_id("txn"),
        };
        let json = refund.to_json();
        changes.push(EventType::RefundCreated, json.clone());
        changes.push(EventType::ChargeRefunded, charge.to_json());
        self.refunds.insert(refund.id.clone(), refund);
        Ok(json)
    }

    /// The id of the charge a refund request points at, once it is known to be refundable.
    fn refundable_charge(&self, target: &RefundTarget) -> Result<String, ApiError> {
        let missing = |object: &str, id: &str, param: &str| {
            let mut err = ApiError::resource_missing(object, id, param);
            err.status = StatusCode::BAD_REQUEST;
            err
        };
        let charge = match target {
            RefundTarget::PaymentIntent(pi_id) => {
                let pi = self
                    .intents
                    .get(pi_id)
                    .ok_or_else(|| missing("payment_intent", pi_id, "payment_intent"))?;
                pi.latest_charge
                    .as_ref()
                    .and_then(|id| self.charges.get(id))
                    .filter(|c| c.status == ChargeStatus::Succeeded && c.captured)
                    .ok_or_else(|| {
                        ApiError::invalid_param(
                            "payment_intent",
                            format!(
                                "This PaymentIntent ({pi_id}) does not have a successful charge \
                                 to refund."
                            ),
                        )
                    })?
            }
            RefundTarget::Charge(charge_id) => {
                let charge = self
                    .charges
                    .get(charge_id)
                    .ok_or_else(|| missing("charge", charge_id, "charge"))?;
                if charge.status != ChargeStatus::Succeeded || !charge.captured {
                    return Err(ApiError::invalid_param(
                        "charge",
                        format!("Charge {charge_id} has not been captured or did not succeed."),
                    ));
                }
                charge
            }
        };
        Ok(charge.id.clone())
    }
}
