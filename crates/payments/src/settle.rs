//! Settling a closed payment: its order ended without taking the money, so Stripe is made to
//! agree. A PaymentIntent that can still be paid is canceled; one that was paid is refunded
//! in full (the idempotency key derived from the payment and the amount, so a retry reaches
//! the same Refund). A create whose answer was lost is first asked again under its own key,
//! which reaches the PaymentIntent it made. What Stripe then says is recorded as the truth.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::{
    domain::RefundId,
    ledger::{Ledger, ReconcileError, Report},
    state::Status,
    store::{
        payments::{self, Payment},
        refunds::{self, Refund},
    },
    stripe::{Intent, ProviderError},
};

/// Rounds of asking Stripe in one settling: a cancel refused because the intent succeeded
/// meanwhile is followed by a refund, and that by a look at the result.
const ROUNDS: usize = 4;

/// How a settling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Nothing to do: not closed, or nothing at Stripe can move.
    Nothing,
    /// Stripe agrees now: canceled, refunded, or disputed (a person takes it from there).
    Done(Status),
}

impl Ledger {
    /// Makes Stripe agree with closed payment `payment_id`. An intent still on its way
    /// (`processing`) can be neither canceled nor refunded yet: that is an `Unavailable`
    /// error, and the job tries again later.
    #[tracing::instrument(skip(self))]
    pub async fn settle(&self, payment_id: &str) -> Result<Settled, ReconcileError> {
        let payment = payments::find(&self.pool, payment_id)
            .await?
            .ok_or_else(|| ReconcileError::Unknown(payment_id.to_owned()))?;
        if !payment.needs_settling() {
            return Ok(Settled::Nothing);
        }
        let Some(mut intent) = self.intent_of(&payment).await? else {
            return Ok(Settled::Nothing);
        };
        let mut refunds = Vec::new();
        for _ in 0..ROUNDS {
            match intent.status {
                Status::Canceled | Status::Refunded | Status::Disputed => break,
                Status::Succeeded | Status::PartiallyRefunded => {
                    refunds.push(self.refund_rest(&payment, &intent).await?);
                    intent = self.stripe.retrieve_intent(&intent.id).await?;
                }
                Status::Processing => break,
                _ => {
                    let key = format!("cancel-{}", payment.id);
                    intent = match self.stripe.cancel_intent(&intent.id, &key).await {
                        Ok(canceled) => canceled,
                        // It moved meanwhile (paid, most likely): look again.
                        Err(ProviderError::Refused { .. }) => {
                            self.stripe.retrieve_intent(&intent.id).await?
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        let mut tx = common::db::begin(&self.pool).await?;
        let mut locked = payments::lock(&mut tx, payment_id)
            .await?
            .ok_or_else(|| ReconcileError::Unknown(payment_id.to_owned()))?;
        for (refund, key) in refunds.iter().flatten() {
            refunds::insert_automatic(&mut tx, refund, key).await?;
        }
        let link = locked.provider_id.is_none().then_some(&intent);
        self.apply_with(&mut tx, &mut locked, &Report::from(&intent), link)
            .await?;
        self.queue.commit(tx).await?;
        if locked.needs_settling() {
            return Err(ReconcileError::Provider(ProviderError::Unavailable(
                format!(
                    "{} is {} at Stripe; settling again later",
                    intent.id, intent.status
                ),
            )));
        }
        metrics::counter!("payments_settled_total", "status" => intent.status.as_str())
            .increment(1);
        tracing::info!(payment = %locked.id, intent = %intent.id, status = %intent.status, reason = ?locked.close_reason, "closed payment settled at Stripe");
        Ok(Settled::Done(intent.status))
    }

    /// The payment's PaymentIntent as Stripe has it now; for a payment whose create got no
    /// answer, the create is asked again under its key (reaching the intent it made, or
    /// making it, to be canceled at once). `None` when Stripe holds no intent for it.
    async fn intent_of(&self, payment: &Payment) -> Result<Option<Intent>, ReconcileError> {
        if let Some(id) = &payment.provider_id {
            return Ok(Some(self.stripe.retrieve_intent(id).await?));
        }
        let Some(new) = payment.new_payment() else {
            return Ok(None);
        };
        match self.stripe.create_intent(&new).await {
            Ok(intent) => Ok(Some(intent)),
            Err(ProviderError::Declined { intent, .. }) => Ok(intent.map(|i| *i)),
            Err(e) => Err(e.into()),
        }
    }

    /// Refunds what the paid `intent` still holds; answers the refund to record, if one was
    /// made now.
    async fn refund_rest(
        &self,
        payment: &Payment,
        intent: &Intent,
    ) -> Result<Option<(Refund, String)>, ReconcileError> {
        // The amount refunded is only known with the latest charge expanded.
        let intent = self.stripe.retrieve_intent(&intent.id).await?;
        let left = intent.amount - intent.amount_refunded;
        if left <= 0 {
            return Ok(None);
        }
        let key = format!("auto-refund-{}-{left}", payment.id);
        let metadata = HashMap::from([
            ("order_id".to_owned(), payment.order_id.clone()),
            ("reason".to_owned(), "order_closed".to_owned()),
        ]);
        let made = self.stripe.refund(&intent.id, left, &key, metadata).await?;
        metrics::counter!("payments_auto_refunds_total").increment(1);
        tracing::warn!(payment = %payment.id, order = %payment.order_id, amount = left, refund = %made.id, "money came for an order that did not happen; refunded it");
        let refund = Refund {
            id: RefundId::new().to_string(),
            payment_id: payment.id.clone(),
            provider_id: made.id,
            amount: made.amount,
            status: made.status,
            created_at: OffsetDateTime::now_utc(),
        };
        Ok(Some((refund, key)))
    }
}
