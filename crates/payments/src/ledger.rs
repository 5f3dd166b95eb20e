//! Applying what the provider says about a payment: an API answer, a webhook event or a
//! reconciliation all become a [`Report`], which goes through the state machine on a locked
//! row. A move that orders must hear about enqueues its `notify_orders` job in the same
//! transaction, so the notification exists exactly when the change does. The outcome answered
//! to the request that created the payment is not sent: orders has it from the answer.
//!
//! Stripe is the source of truth for money: what its API answers (a create, a retrieve, a
//! cancel) is recorded even where the state machine would call it a contradiction; an event
//! is only a hint. A closed payment (its order ended without it) that may still hold or take
//! money gets a `settle_payment` job in the same transaction as the change that shows it.
//! Both jobs run in the trace of the checkout that created the payment, linked to what
//! caused them (a webhook's processing, a reconciliation).

use common::queue::{NewJob, Queue};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument as _;

use crate::{
    state::{Status, Transition, transition},
    store::payments::{self, Payment},
    stripe::{Intent, ProviderError, Stripe},
};

/// The job that tells orders about a payment's new status.
pub const NOTIFY_ORDERS: &str = "notify_orders";
/// The job that makes Stripe agree with a closed payment: cancel its PaymentIntent, or
/// refund what it took.
pub const SETTLE_PAYMENT: &str = "settle_payment";

/// Something the provider says about a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The status it reports.
    pub status: Status,
    /// Why it failed or was canceled.
    pub failure_reason: Option<String>,
    /// Refunded so far, when known.
    pub amount_refunded: Option<i64>,
    /// The event it came in, if any.
    pub event_id: Option<String>,
    /// Answered to the request that created the payment: orders learns it from the answer
    /// (and from the replay of that answer when it asks again), so it is not sent again.
    pub answered: bool,
    /// Stripe's API said it (an answer, a retrieve), not an event: it is the truth and wins
    /// over a settled status that contradicts it.
    pub authoritative: bool,
}

impl Report {
    /// A report of `status` with nothing else.
    pub fn status(status: Status) -> Self {
        Self {
            status,
            failure_reason: None,
            amount_refunded: None,
            event_id: None,
            answered: false,
            authoritative: false,
        }
    }
}

impl From<&Intent> for Report {
    fn from(intent: &Intent) -> Self {
        Self {
            status: intent.status,
            failure_reason: intent.failure_reason.clone(),
            amount_refunded: Some(intent.amount_refunded),
            event_id: None,
            answered: false,
            authoritative: true,
        }
    }
}

/// What `report` does to a payment in `current`: the state machine's answer, except that
/// Stripe's own word overrides a contradiction and moves a failed payment wherever its
/// PaymentIntent went (after a decline it takes another card). Answers the move and whether
/// it overrode a contradiction.
fn decide(current: Status, report: &Report) -> (Transition, bool) {
    let machine = transition(current, report.status);
    if !report.authoritative || machine == Transition::Same {
        return (machine, false);
    }
    match machine {
        Transition::Conflict => (Transition::Move, true),
        Transition::Stale if current == Status::Failed => (Transition::Move, false),
        other => (other, false),
    }
}

/// Why a reconciliation did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// No such payment, or it has no PaymentIntent.
    #[error("payment {0} is unknown or has no PaymentIntent")]
    Unknown(String),
    /// Stripe did not answer.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Postgres failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// What applying reports needs.
#[derive(Clone)]
pub struct Ledger {
    /// Postgres.
    pub pool: PgPool,
    /// The payments queue.
    pub queue: Queue,
    /// The provider.
    pub stripe: Stripe,
    /// Attempts of a `notify_orders` job.
    pub notify_attempts: i32,
}

impl Ledger {
    /// Applies `report` to the locked `payment` in the caller's transaction and answers what
    /// the state machine made of it; only a `Move` changes the status.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        payment: &mut Payment,
        report: &Report,
    ) -> Result<Transition, sqlx::Error> {
        self.apply_with(conn, payment, report, None).await
    }

    /// [`Ledger::apply`] that also links the payment to `intent`, in the same statement.
    pub async fn apply_with(
        &self,
        conn: &mut PgConnection,
        payment: &mut Payment,
        report: &Report,
        intent: Option<&Intent>,
    ) -> Result<Transition, sqlx::Error> {
        let (outcome, overrode) = decide(payment.status, report);
        if overrode {
            // Say, failed here and paid at Stripe: Stripe's word is recorded, and counted.
            metrics::counter!("payments_contradictions_total", "ours" => payment.status.as_str(), "provider" => report.status.as_str())
                .increment(1);
            tracing::error!(payment = %payment.id, ours = %payment.status, provider = %report.status, "the payment contradicted Stripe; recording Stripe's state");
        }
        let mut change = payments::Change {
            intent,
            ..payments::Change::default()
        };
        if matches!(outcome, Transition::Move | Transition::Same) {
            change.refunded = report
                .amount_refunded
                .filter(|&total| total > payment.amount_refunded);
        }
        let mut notify = None;
        if outcome == Transition::Move {
            let reason = report
                .failure_reason
                .as_deref()
                .filter(|_| matches!(report.status, Status::Failed | Status::Canceled));
            change.status = Some((report.status, reason));
            if report.status.notifies_orders() && !report.answered {
                notify = Some(
                    NewJob::new(
                        NOTIFY_ORDERS,
                        json!({
                            "payment_id": payment.id,
                            "order_id": payment.order_id,
                            "status": report.status.as_str(),
                            "reason": reason,
                            "event_id": report.event_id,
                        }),
                    )
                    .dedup(format!("notify:{}:{}", payment.id, report.status))
                    .attempts(self.notify_attempts)
                    .in_trace_of(payment.traceparent.as_deref()),
                );
            }
        }
        let job = notify.as_ref().map(|job| (&self.queue, job));
        payments::write(conn, payment, &change, job).await?;
        self.settle_if_needed(conn, payment).await?;
        if outcome == Transition::Move {
            metrics::counter!("payments_transitions_total", "to" => report.status.as_str())
                .increment(1);
            tracing::info!(payment = %payment.id, status = %report.status, event = ?report.event_id, "payment moved");
        }
        Ok(outcome)
    }

    /// Queues the settling of `payment` when it is closed and money may still move against
    /// it; a job already queued for it stands.
    pub async fn settle_if_needed(
        &self,
        conn: &mut PgConnection,
        payment: &Payment,
    ) -> Result<(), sqlx::Error> {
        if payment.needs_settling() {
            let job = self
                .settle_job(&payment.id)
                .in_trace_of(payment.traceparent.as_deref());
            self.queue.enqueue(conn, job).await?;
        }
        Ok(())
    }

    /// The job that settles closed payment `payment_id`.
    pub fn settle_job(&self, payment_id: &str) -> NewJob {
        NewJob::new(SETTLE_PAYMENT, json!({ "payment_id": payment_id }))
            .dedup(format!("settle:{payment_id}"))
            .attempts(self.notify_attempts)
    }

    /// Asks Stripe where the payment is and applies the answer: the way out of any doubt
    /// (a stale or contradicting event, a missed webhook).
    /// `event_id` names the event that caused the check, when one did: orders hears of it.
    #[tracing::instrument(skip(self))]
    pub async fn reconcile(
        &self,
        payment_id: &str,
        event_id: Option<&str>,
    ) -> Result<Transition, ReconcileError> {
        let unknown = || ReconcileError::Unknown(payment_id.to_owned());
        let payment = payments::find(&self.pool, payment_id)
            .await?
            .ok_or_else(unknown)?;
        let provider_id = payment.provider_id.ok_or_else(unknown)?;
        // A check the reconciler started is in no checkout's trace: its span links to the
        // checkout.
        let span = tracing::info_span!("check_with_stripe", intent = %provider_id);
        if let Some(traceparent) = &payment.traceparent {
            common::telemetry::link_traceparent(&span, traceparent);
        }
        async move {
            let intent = self.stripe.retrieve_intent(&provider_id).await?;
            let mut tx = common::db::begin(&self.pool).await?;
            let mut payment = payments::lock(&mut tx, payment_id)
                .await?
                .ok_or_else(unknown)?;
            let report = Report {
                event_id: event_id.map(str::to_owned),
                ..Report::from(&intent)
            };
            let outcome = self.apply(&mut tx, &mut payment, &report).await?;
            self.queue.commit(tx).await?;
            Ok(outcome)
        }
        .instrument(span)
        .await
    }
}
