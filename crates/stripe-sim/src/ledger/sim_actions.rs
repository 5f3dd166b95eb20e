//! State changes Stripe makes on its own, triggered here through `/_sim`.
//!
//! In production these come from customers and banks (3-D Secure answered, an ACH debit
//! settling, a chargeback); tests trigger them explicitly to drive webhooks and reconciliation.

use serde_json::{Value, json};

use super::{Changes, Ledger};
use crate::cards::{self, Decline};
use crate::error::ApiError;
use crate::ids;
use crate::objects::{ChargeStatus, Dispute, EventType, Status};

/// How the customer answers a 3-D Secure challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticationOutcome {
    /// Authenticated: the charge goes ahead.
    Succeed,
    /// Failed or abandoned: the PaymentIntent needs a new payment method.
    Fail,
}

impl Ledger {
    /// Answers the 3-D Secure challenge of a `requires_action` PaymentIntent.
    pub fn authenticate(
        &mut self,
        id: &str,
        outcome: AuthenticationOutcome,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        let pi = self.intent(id)?;
        if pi.status != Status::RequiresAction {
            return Err(ApiError::unexpected_state(format!(
                "PaymentIntent {id} has a status of {}; only requires_action can be authenticated.",
                pi.status
            )));
        }
        let pm_id = pi.payment_method.clone().unwrap_or_default();
        match outcome {
            AuthenticationOutcome::Succeed => self.authorize(id, &pm_id, changes),
            AuthenticationOutcome::Fail => {
                let mut error = json!({
                    "code": "payment_intent_authentication_failure",
                    "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
                    "message": "The provided PaymentMethod has failed authentication. You can provide \
                                payment_method_data or a new PaymentMethod to attempt to fulfill \
                                this PaymentIntent again.",
                    "type": "invalid_request_error"
                });
                error["payment_method"] = self.payment_method_json(&pm_id);
                let pi = self.intent_mut(id)?;
                pi.status = Status::RequiresPaymentMethod;
                pi.payment_method = None;
                pi.next_action = None;
                pi.last_payment_error = Some(error);
                let json = pi.to_json();
                changes.push(EventType::PaymentIntentPaymentFailed, json.clone());
                Ok(json)
            }
        }
    }

    /// Moves a PaymentIntent that awaits payment into `processing`.
    pub fn start_processing(&mut self, id: &str, changes: &mut Changes) -> Result<Value, ApiError> {
        self.expect_open(id, "processing")?;
        let pm_id = self.attached_or_default_payment_method(id)?;
        let pi = self.intent_mut(id)?;
        pi.status = Status::Processing;
        pi.payment_method = Some(pm_id);
        pi.next_action = None;
        let json = pi.to_json();
        changes.push(EventType::PaymentIntentProcessing, json.clone());
        Ok(json)
    }

    /// Completes an open PaymentIntent as if its payment went through.
    pub fn force_success(&mut self, id: &str, changes: &mut Changes) -> Result<Value, ApiError> {
        self.expect_open(id, "succeeded")?;
        let pm_id = self.attached_or_default_payment_method(id)?;
        self.authorize(id, &pm_id, changes)
    }

    /// Fails an open PaymentIntent as if the issuer declined with `decline`.
    pub fn force_failure(
        &mut self,
        id: &str,
        decline: Decline,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        self.expect_open(id, "payment_failed")?;
        let pm_id = self.attached_or_default_payment_method(id)?;
        self.decline(id, &pm_id, decline, changes)?;
        Ok(self.intent(id)?.to_json())
    }

    /// Opens a dispute on the captured charge of a PaymentIntent.
    pub fn open_dispute(
        &mut self,
        id: &str,
        reason: &str,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        let latest_charge = self.intent(id)?.latest_charge.clone().unwrap_or_default();
        let charge = self
            .charges
            .get_mut(&latest_charge)
            .filter(|c| c.status == ChargeStatus::Succeeded && c.captured && !c.disputed)
            .ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "PaymentIntent {id} has no captured, undisputed charge to dispute."
                ))
            })?;
        charge.disputed = true;
        let dispute = Dispute {
            id: ids::new_id("dp"),
            amount: charge.amount - charge.amount_refunded,
            charge: charge.id.clone(),
            created: ids::now(),
            currency: charge.currency.clone(),
            payment_intent: id.to_owned(),
            reason: reason.to_owned(),
        };
        let json = dispute.to_json();
        changes.push(EventType::ChargeDisputeCreated, json.clone());
        self.disputes.insert(dispute.id.clone(), dispute);
        Ok(json)
    }

    /// Fails unless the PaymentIntent still awaits the outcome of a payment.
    fn expect_open(&self, id: &str, target: &str) -> Result<(), ApiError> {
        let status = self.intent(id)?.status;
        if matches!(
            status,
            Status::RequiresPaymentMethod
                | Status::RequiresConfirmation
                | Status::RequiresAction
                | Status::Processing
        ) {
            Ok(())
        } else {
            Err(ApiError::unexpected_state(format!(
                "PaymentIntent {id} has a status of {status} and cannot move to {target}."
            )))
        }
    }

    /// The attached payment method, or a fresh `pm_card_visa` one when there is none.
    fn attached_or_default_payment_method(&mut self, id: &str) -> Result<String, ApiError> {
        match self.intent(id)?.payment_method.clone() {
            Some(pm) => Ok(pm),
            None => Ok(self.resolve_payment_method(cards::default_card().token)?.0),
        }
    }
}
