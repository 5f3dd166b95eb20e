//! The payment provider, wrapped: the three Stripe calls payments makes (create a
//! PaymentIntent, retrieve one, refund), each with an idempotency key where a retry could
//! cost money, and Stripe's answers sorted once, here, into what the rest of the service acts
//! on: an [`Intent`] in our own [`Status`] terms, or a [`ProviderError`] that says whether a
//! retry can help.

use std::{collections::HashMap, time::Duration};

use common::Secret;
use stripe::{
    ApiErrors, ApiErrorsType, Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError,
    StripeRequest as _,
};
use stripe_core::{
    PaymentIntent, PaymentIntentStatus,
    payment_intent::{
        CancelPaymentIntent, CancelPaymentIntentCancellationReason, CreatePaymentIntent,
        CreatePaymentIntentAutomaticPaymentMethods,
        CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects, RetrievePaymentIntent,
    },
    refund::CreateRefund,
};
use stripe_types::Expandable;

use crate::{domain::NewPayment, state::Status};

/// A Stripe call that did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Timeouts, 5xx, 429, a concurrent request with the same key (409), a lost
    /// connection: the same call, with the same idempotency key, may succeed later.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// The card was declined (402 `card_error`): an outcome, not a failure.
    #[error("declined: {reason}")]
    Declined {
        /// The PaymentIntent as the decline left it.
        intent: Option<Box<Intent>>,
        /// The decline code, or the error code.
        reason: String,
    },
    /// A 4xx Stripe will repeat (amount too small, already refunded, …).
    #[error("refused with {status} {code}: {message}")]
    Refused {
        /// Stripe's status.
        status: u16,
        /// Stripe's error code.
        code: String,
        /// Stripe's message, for logs only.
        message: String,
    },
    /// Stripe holds an earlier request under this idempotency key with other parameters.
    #[error("idempotency key reused with other parameters")]
    IdempotencyMismatch,
    /// The API key is refused or the client is misconfigured.
    #[error("payment provider misconfigured: {0}")]
    Misconfigured(String),
    /// Stripe answered about another amount, currency or order than asked.
    #[error("payment provider answered for something else: {0}")]
    Mismatch(String),
}

/// A PaymentIntent as payments sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// `pi_…`.
    pub id: String,
    /// Its status in our terms.
    pub status: Status,
    /// For Stripe.js.
    pub client_secret: Option<String>,
    /// Minor units.
    pub amount: i64,
    /// Upper-case ISO 4217.
    pub currency: String,
    /// `metadata[order_id]`.
    pub order_id: Option<String>,
    /// Why its last attempt failed, or why it was canceled.
    pub failure_reason: Option<String>,
    /// Refunded so far, when the latest charge was expanded.
    pub amount_refunded: i64,
}

/// A refund Stripe made.
#[derive(Debug, Clone)]
pub struct ProviderRefund {
    /// `re_…`.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// Stripe's status (`succeeded`, `pending`, …).
    pub status: String,
}

/// The Stripe client.
#[derive(Clone)]
pub struct Stripe {
    client: Client,
}

fn idempotent(key: &str) -> Result<RequestStrategy, ProviderError> {
    IdempotencyKey::new(key)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| ProviderError::Misconfigured(format!("idempotency key {key:?}: {e:?}")))
}

impl Stripe {
    /// A client for the API at `base` (an origin) with a per-call `timeout`.
    pub fn new(base: &str, secret: &Secret, timeout: Duration) -> Result<Self, ProviderError> {
        let client = ClientBuilder::new(secret.expose())
            .url(base)
            .timeout(timeout)
            .build()
            .map_err(|e| ProviderError::Misconfigured(e.to_string()))?;
        Ok(Self { client })
    }

    /// Creates the order's PaymentIntent (or, under the same key, gets the one created
    /// before), confirmed at once when a payment method is given.
    #[tracing::instrument(skip(self, new), fields(order = %new.order_id))]
    pub async fn create_intent(&self, new: &NewPayment) -> Result<Intent, ProviderError> {
        let currency = new
            .currency
            .as_str()
            .to_ascii_lowercase()
            .parse::<stripe_types::Currency>()
            .unwrap_or_else(|never| match never {});
        let mut create =
            CreatePaymentIntent::new(new.amount, currency).metadata(HashMap::from([(
                "order_id".to_owned(),
                new.order_id.clone(),
            )]));
        let mut methods = CreatePaymentIntentAutomaticPaymentMethods::new(true);
        if let Some(pm) = &new.payment_method {
            // A server-side confirmation has nowhere to send a customer for a redirect.
            methods.allow_redirects =
                Some(CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects::Never);
            create = create.payment_method(pm.as_str()).confirm(true);
        }
        create = create.automatic_payment_methods(methods);
        let result = create
            .customize()
            .request_strategy(idempotent(&new.provider_key())?)
            .send(&self.client)
            .await;
        let intent = match result {
            Ok(pi) => Intent::from(pi),
            Err(StripeError::Stripe(error, 402)) if error.type_ == ApiErrorsType::CardError => {
                return Err(declined(*error));
            }
            Err(e) => return Err(classify(e)),
        };
        let currency = new.currency.as_str();
        if intent.amount != new.amount
            || intent.currency != currency
            || intent.order_id.as_deref() != Some(new.order_id.as_str())
        {
            return Err(ProviderError::Mismatch(format!(
                "{} is {} {} for {:?}, asked {} {currency} for {}",
                intent.id,
                intent.amount,
                intent.currency,
                intent.order_id,
                new.amount,
                new.order_id
            )));
        }
        Ok(intent)
    }

    /// The PaymentIntent as Stripe has it now, with its latest charge (refunds, disputes).
    #[tracing::instrument(skip(self))]
    pub async fn retrieve_intent(&self, id: &str) -> Result<Intent, ProviderError> {
        RetrievePaymentIntent::new(id)
            .expand(vec!["latest_charge".to_owned()])
            .send(&self.client)
            .await
            .map(Intent::from)
            .map_err(classify)
    }

    /// Cancels the PaymentIntent `id` (its order was abandoned) under idempotency key `key`,
    /// so nobody can pay it any more. Stripe refuses (`payment_intent_unexpected_state`) an
    /// intent that succeeded or was canceled already.
    #[tracing::instrument(skip(self))]
    pub async fn cancel_intent(&self, id: &str, key: &str) -> Result<Intent, ProviderError> {
        CancelPaymentIntent::new(id)
            .cancellation_reason(CancelPaymentIntentCancellationReason::Abandoned)
            .customize()
            .request_strategy(idempotent(key)?)
            .send(&self.client)
            .await
            .map(Intent::from)
            .map_err(classify)
    }

    /// Refunds `amount` of the PaymentIntent `intent_id` under idempotency key `key`.
    #[tracing::instrument(skip(self, metadata))]
    pub async fn refund(
        &self,
        intent_id: &str,
        amount: i64,
        key: &str,
        metadata: HashMap<String, String>,
    ) -> Result<ProviderRefund, ProviderError> {
        let refund = CreateRefund::new()
            .payment_intent(intent_id)
            .amount(amount)
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(key)?)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(ProviderRefund {
            id: refund.id.to_string(),
            amount: refund.amount,
            status: refund.status.unwrap_or_else(|| "pending".to_owned()),
        })
    }
}

/// Sorts a failed call.
fn classify(e: StripeError) -> ProviderError {
    match e {
        StripeError::Stripe(error, status) => {
            let code = error.code.as_ref().map_or_else(
                || error.type_.as_str().to_owned(),
                |c| c.as_str().to_owned(),
            );
            let message = error.message.clone().unwrap_or_default();
            match status {
                402 if error.type_ == ApiErrorsType::CardError => declined(*error),
                408 | 409 | 429 | 500.. => {
                    ProviderError::Unavailable(format!("answered {status} {code}"))
                }
                401 | 403 => ProviderError::Misconfigured(format!("answered {status}: {message}")),
                _ if error.type_ == ApiErrorsType::IdempotencyError => {
                    ProviderError::IdempotencyMismatch
                }
                _ => ProviderError::Refused {
                    status,
                    code,
                    message,
                },
            }
        }
        StripeError::Timeout => ProviderError::Unavailable("timed out".to_owned()),
        // The call may have gone through; the idempotency key makes the retry safe.
        StripeError::ClientError(e) | StripeError::JSONDeserialize(e) => {
            ProviderError::Unavailable(e)
        }
        StripeError::ConfigError(e) => ProviderError::Misconfigured(e),
    }
}

fn declined(error: ApiErrors) -> ProviderError {
    let reason = error
        .decline_code
        .clone()
        .or_else(|| error.code.as_ref().map(|c| c.as_str().to_owned()))
        .unwrap_or_else(|| "card_declined".to_owned());
    ProviderError::Declined {
        intent: error.payment_intent.map(|pi| Box::new(Intent::from(pi))),
        reason,
    }
}

/// Why the PaymentIntent's last attempt failed, from its `last_payment_error`.
fn failure_reason(error: &ApiErrors) -> String {
    error
        .decline_code
        .clone()
        .or_else(|| error.code.as_ref().map(|c| c.as_str().to_owned()))
        .or_else(|| error.message.clone())
        .unwrap_or_else(|| "payment_failed".to_owned())
}

impl From<PaymentIntent> for Intent {
    fn from(pi: PaymentIntent) -> Self {
        let charge = match &pi.latest_charge {
            Some(Expandable::Object(charge)) => Some(charge.as_ref()),
            _ => None,
        };
        let amount_refunded = charge.map_or(0, |c| c.amount_refunded);
        let status = match &pi.status {
            PaymentIntentStatus::Succeeded => match charge {
                Some(c) if c.disputed => Status::Disputed,
                Some(c) if c.amount_captured > 0 && c.amount_refunded >= c.amount_captured => {
                    Status::Refunded
                }
                Some(c) if c.amount_refunded > 0 => Status::PartiallyRefunded,
                _ => Status::Succeeded,
            },
            PaymentIntentStatus::Canceled => Status::Canceled,
            // Authorised and waiting for a capture: the money is not ours yet.
            PaymentIntentStatus::Processing | PaymentIntentStatus::RequiresCapture => {
                Status::Processing
            }
            PaymentIntentStatus::RequiresAction => Status::RequiresAction,
            PaymentIntentStatus::RequiresConfirmation => Status::RequiresConfirmation,
            // After a decline Stripe waits for another payment method; the attempt failed.
            PaymentIntentStatus::RequiresPaymentMethod if pi.last_payment_error.is_some() => {
                Status::Failed
            }
            // Unknown statuses are treated as the start: any later report moves past them.
            _ => Status::RequiresPaymentMethod,
        };
        let failure_reason = match status {
            Status::Failed => pi.last_payment_error.as_deref().map(failure_reason),
            Status::Canceled => Some(
                pi.cancellation_reason
                    .as_ref()
                    .map_or("canceled", |r| r.as_str())
                    .to_owned(),
            ),
            _ => None,
        };
        Self {
            id: pi.id.to_string(),
            status,
            client_secret: pi.client_secret,
            amount: pi.amount,
            currency: pi.currency.to_string().to_ascii_uppercase(),
            order_id: pi.metadata.get("order_id").cloned(),
            failure_reason,
            amount_refunded,
        }
    }
}
