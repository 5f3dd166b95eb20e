//! PaymentIntent operations of the public API: create, confirm, cancel, capture.
//!
//! Confirmation charges the test card behind the payment method and follows its documented
//! behaviour: approve, decline (402 and `payment_failed`) or ask for 3-D Secure.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Changes, Ledger};
use crate::cards::{Behaviour, Decline};
use crate::error::ApiError;
use crate::ids;
use crate::money;
use crate::objects::{CaptureMethod, Charge, ChargeStatus, EventType, PaymentIntent, Status};

/// The decline for a card that needs 3-D Secure when the caller said it cannot act.
const AUTHENTICATION_REQUIRED: Decline = Decline {
    code: "authentication_required",
    decline_code: "authentication_required",
    message: "Your card was declined. This transaction requires authentication.",
};

/// A validated `POST /v1/payment_intents`.
#[derive(Debug, Clone)]
pub struct NewPaymentIntent {
    /// Amount in minor units, already within Stripe's limits.
    pub amount: i64,
    /// Lower-case ISO 4217 code.
    pub currency: String,
    /// Caller's key-value pairs.
    pub metadata: BTreeMap<String, String>,
    /// Free text.
    pub description: Option<String>,
    /// Customer id, echoed back.
    pub customer: Option<String>,
    /// Payment method or test token to attach.
    pub payment_method: Option<String>,
    /// Payment method types; `["card"]` when none are given.
    pub payment_method_types: Vec<String>,
    /// `automatic_payment_methods[enabled]`.
    pub automatic_payment_methods: bool,
    /// When to capture.
    pub capture_method: CaptureMethod,
    /// Whether `confirm=true` was sent.
    pub confirm: bool,
    /// Fail instead of asking for 3-D Secure when confirming in the same call.
    pub error_on_requires_action: bool,
    /// Receipt address.
    pub receipt_email: Option<String>,
    /// Statement descriptor.
    pub statement_descriptor: Option<String>,
    /// Statement descriptor suffix.
    pub statement_descriptor_suffix: Option<String>,
    /// `on_session` or `off_session`.
    pub setup_future_usage: Option<String>,
}

/// Options of a confirmation.
#[derive(Debug, Clone, Default)]
pub struct ConfirmOptions {
    /// Payment method or test token to use instead of the attached one.
    pub payment_method: Option<String>,
    /// Fail instead of asking for 3-D Secure (`error_on_requires_action` or `off_session`).
    pub error_on_requires_action: bool,
}

impl Ledger {
    /// Creates a PaymentIntent, confirming it at once when asked.
    pub fn create_payment_intent(
        &mut self,
        new: NewPaymentIntent,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        money::check_amount(new.amount, &new.currency)?;
        if new.confirm && new.payment_method.is_none() {
            return Err(ApiError::unexpected_state(
                "You cannot confirm this PaymentIntent because it's missing a payment method. \
                 Provide a payment_method to confirm it.",
            )
            .with_param("payment_method"));
        }
        let payment_method = new
            .payment_method
            .as_deref()
            .map(|raw| self.resolve_payment_method(raw))
            .transpose()?
            .map(|(id, _)| id);
        let id = ids::new_id("pi");
        let pi = PaymentIntent {
            client_secret: format!("{id}_secret_{}", ids::random_token(25)),
            id: id.clone(),
            amount: new.amount,
            amount_capturable: 0,
            amount_received: 0,
            currency: new.currency,
            status: if payment_method.is_some() {
                Status::RequiresConfirmation
            } else {
                Status::RequiresPaymentMethod
            },
            capture_method: new.capture_method,
            created: ids::now(),
            canceled_at: None,
            cancellation_reason: None,
            description: new.description,
            metadata: new.metadata,
            customer: new.customer,
            payment_method,
            payment_method_types: new.payment_method_types,
            automatic_payment_methods: new.automatic_payment_methods,
            latest_charge: None,
            last_payment_error: None,
            next_action: None,
            receipt_email: new.receipt_email,
            statement_descriptor: new.statement_descriptor,
            statement_descriptor_suffix: new.statement_descriptor_suffix,
            setup_future_usage: new.setup_future_usage,
        };
        changes.push(EventType::PaymentIntentCreated, pi.to_json());
        let json = pi.to_json();
        self.intents.insert(id.clone(), pi);
        if new.confirm {
            // The payment method was resolved above, so confirm with the attached one.
            let options = ConfirmOptions {
                payment_method: None,
                error_on_requires_action: new.error_on_requires_action,
            };
            self.confirm_payment_intent(&id, options, changes)
        } else {
            Ok(json)
        }
    }

    /// Confirms a PaymentIntent: charges its payment method.
    pub fn confirm_payment_intent(
        &mut self,
        id: &str,
        options: ConfirmOptions,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        let status = self.intent(id)?.status;
        if !matches!(
            status,
            Status::RequiresPaymentMethod | Status::RequiresConfirmation | Status::RequiresAction
        ) {
            return Err(ApiError::unexpected_state(format!(
                "You cannot confirm this PaymentIntent because it has a status of {status}. Only \
                 a PaymentIntent with one of the following statuses may be confirmed: \
                 requires_confirmation, requires_payment_method, requires_action."
            )));
        }
        let pm_id = match options.payment_method.as_deref() {
            Some(raw) => self.resolve_payment_method(raw)?.0,
            None => self.intent(id)?.payment_method.clone().ok_or_else(|| {
                ApiError::unexpected_state(format!(
                    "You cannot confirm this PaymentIntent because it's missing a payment \
                     method. To confirm the PaymentIntent with {id}, specify a payment method \
                     attached to this PaymentIntent or provide a payment_method."
                ))
                .with_param("payment_method")
            })?,
        };
        match self.card_of(&pm_id).behaviour {
            Behaviour::Approve => self.authorize(id, &pm_id, changes),
            Behaviour::Decline(decline) => Err(self.decline(id, &pm_id, decline, changes)?),
            Behaviour::Authenticate if options.error_on_requires_action => {
                Err(self.decline(id, &pm_id, AUTHENTICATION_REQUIRED, changes)?)
            }
            Behaviour::Authenticate => self.require_action(id, &pm_id, changes),
        }
    }

    /// Cancels a PaymentIntent that has not completed.
    pub fn cancel_payment_intent(
        &mut self,
        id: &str,
        reason: Option<String>,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        let pi = self.intent(id)?;
        if matches!(pi.status, Status::Succeeded | Status::Canceled) {
            return Err(ApiError::unexpected_state(format!(
                "You cannot cancel this PaymentIntent because it has a status of {}. Only a \
                 PaymentIntent with one of the following statuses may be canceled: \
                 requires_payment_method, requires_capture, requires_confirmation, \
                 requires_action, processing.",
                pi.status
            )));
        }
        // Canceling an authorization releases the held funds.
        let held_charge = (pi.status == Status::RequiresCapture)
            .then(|| pi.latest_charge.clone())
            .flatten();
        if let Some(charge) = held_charge.and_then(|c| self.charges.get_mut(&c)) {
            charge.amount_refunded = charge.amount;
            changes.push(EventType::ChargeRefunded, charge.to_json());
        }
        let pi = self.intent_mut(id)?;
        pi.status = Status::Canceled;
        pi.canceled_at = Some(ids::now());
        pi.cancellation_reason = reason;
        pi.amount_capturable = 0;
        pi.next_action = None;
        let json = pi.to_json();
        changes.push(EventType::PaymentIntentCanceled, json.clone());
        Ok(json)
    }

    /// Captures an authorized PaymentIntent, in full or in part.
    pub fn capture_payment_intent(
        &mut self,
        id: &str,
        amount_to_capture: Option<i64>,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        let pi = self.intent(id)?;
        if pi.status != Status::RequiresCapture {
            return Err(ApiError::unexpected_state(format!(
                "This PaymentIntent could not be captured because it has a status of {}. Only a \
                 PaymentIntent with one of the following statuses may be captured: \
                 requires_capture.",
                pi.status
            )));
        }
        let amount = amount_to_capture.unwrap_or(pi.amount_capturable);
        if amount > pi.amount_capturable {
            return Err(ApiError::invalid_param(
                "amount_to_capture",
                format!(
                    "The amount to capture ({}) cannot be greater than the amount capturable ({}).",
                    money::format(amount, &pi.currency),
                    money::format(pi.amount_capturable, &pi.currency)
                ),
            )
            .with_code("amount_too_large"));
        }
        let charge_id = pi.latest_charge.clone().unwrap_or_default();
        if let Some(charge) = self.charges.get_mut(&charge_id) {
            charge.captured = true;
            charge.amount_captured = amount;
            // Stripe releases whatever is not captured.
            charge.amount_refunded = charge.amount - amount;
            charge.balance_transaction = Some(ids::new_id("txn"));
            changes.push(EventType::ChargeCaptured, charge.to_json());
        }
        let pi = self.intent_mut(id)?;
        pi.status = Status::Succeeded;
        pi.amount_received = amount;
        pi.amount_capturable = 0;
        let json = pi.to_json();
        changes.push(EventType::PaymentIntentSucceeded, json.clone());
        Ok(json)
    }

    /// An approved charge: the PaymentIntent succeeds, or waits for capture.
    pub(super) fn authorize(
        &mut self,
        id: &str,
        pm_id: &str,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        let card = self.card_of(pm_id);
        let pi = self.intent_mut(id)?;
        let manual = pi.capture_method == CaptureMethod::Manual;
        let charge = Charge {
            id: ids::new_id("ch"),
            amount: pi.amount,
            amount_captured: if manual { 0 } else { pi.amount },
            amount_refunded: 0,
            captured: !manual,
            created: ids::now(),
            currency: pi.currency.clone(),
            description: pi.description.clone(),
            disputed: false,
            metadata: pi.metadata.clone(),
            payment_intent: id.to_owned(),
            payment_method: pm_id.to_owned(),
            card,
            status: ChargeStatus::Succeeded,
            failure: None,
            balance_transaction: (!manual).then(|| ids::new_id("txn")),
            receipt_email: pi.receipt_email.clone(),
        };
        pi.latest_charge = Some(charge.id.clone());
        pi.payment_method = Some(pm_id.to_owned());
        pi.last_payment_error = None;
        pi.next_action = None;
        let kind = if manual {
            pi.status = Status::RequiresCapture;
            pi.amount_capturable = pi.amount;
            EventType::PaymentIntentAmountCapturableUpdated
        } else {
            pi.status = Status::Succeeded;
            pi.amount_received = pi.amount;
            EventType::PaymentIntentSucceeded
        };
        let json = pi.to_json();
        changes.push(EventType::ChargeSucceeded, charge.to_json());
        changes.push(kind, json.clone());
        self.charges.insert(charge.id.clone(), charge);
        Ok(json)
    }

    /// A declined charge: the PaymentIntent goes back to `requires_payment_method`. Returns
    /// the 402 the caller answers with.
    pub(super) fn decline(
        &mut self,
        id: &str,
        pm_id: &str,
        decline: Decline,
        changes: &mut Changes,
    ) -> Result<ApiError, ApiError> {
        let card = self.card_of(pm_id);
        let pm_json = self.payment_method_json(pm_id);
        let pi = self.intent_mut(id)?;
        let charge = Charge {
            id: ids::new_id("ch"),
            amount: pi.amount,
            amount_captured: 0,
            amount_refunded: 0,
            captured: false,
            created: ids::now(),
            currency: pi.currency.clone(),
            description: pi.description.clone(),
            disputed: false,
            metadata: pi.metadata.clone(),
            payment_intent: id.to_owned(),
            payment_method: pm_id.to_owned(),
            card,
            status: ChargeStatus::Failed,
            failure: Some(decline),
            balance_transaction: None,
            receipt_email: pi.receipt_email.clone(),
        };
        let mut err = ApiError::card(decline.code, Some(decline.decline_code), decline.message);
        err.related_mut().charge = Some(charge.id.clone());
        err.related_mut().payment_method = Some(pm_json);
        pi.status = Status::RequiresPaymentMethod;
        pi.payment_method = None;
        pi.latest_charge = Some(charge.id.clone());
        pi.next_action = None;
        pi.last_payment_error = Some(err.to_json());
        let json = pi.to_json();
        err.related_mut().payment_intent = Some(json.clone());
        changes.push(EventType::ChargeFailed, charge.to_json());
        changes.push(EventType::PaymentIntentPaymentFailed, json);
        self.charges.insert(charge.id.clone(), charge);
        Ok(err)
    }

    fn require_action(
        &mut self,
        id: &str,
        pm_id: &str,
        changes: &mut Changes,
    ) -> Result<Value, ApiError> {
        let pi = self.intent_mut(id)?;
        let source = ids::new_id("src");
        pi.status = Status::RequiresAction;
        pi.payment_method = Some(pm_id.to_owned());
        pi.last_payment_error = None;
        pi.next_action = Some(json!({
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {
                "type": "three_d_secure_redirect",
                "source": source,
                "stripe_js": format!(
                    "https://hooks.stripe.com/redirect/authenticate/{source}?client_secret={}",
                    pi.client_secret
                )
            }
        }));
        let json = pi.to_json();
        changes.push(EventType::PaymentIntentRequiresAction, json.clone());
        Ok(json)
    }
}
