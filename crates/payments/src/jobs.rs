//! The payments worker's jobs: apply recorded Stripe events, tell orders about an outcome,
//! check a payment with Stripe, and settle a closed one. Delivery is at least once, so each
//! is safe to run again: events go through the state machine, and orders applies a
//! notification at most once. An event never marks a payment paid on its own word: Stripe is
//! asked, and an event that disagrees with its payment is recorded as a mismatch.
//! Events arrive in batches (one job per intake transaction) and a batch applies in one
//! transaction; an event that cannot (its payment not committed yet) or fails is taken alone,
//! and on failure handed to a job of its own, so it retries, and dies, alone.
//! A webhook's trace is not its checkout's: processing an event links to the trace of the
//! checkout that created its payment, and the jobs it causes run in that trace.

use std::collections::HashMap;

use common::queue::{ClaimedJob, Handler, JobError, NewJob};
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::{
    domain::PaymentId,
    events::Effect,
    ledger::{Ledger, NOTIFY_ORDERS, ReconcileError, Report, SETTLE_PAYMENT},
    orders_client::{NotifyError, OrdersClient},
    state::{Status, Transition, transition},
    store::{self, payments::Payment},
    stripe::ProviderError,
};

/// Applies the recorded Stripe events of one intake batch.
pub const PROCESS_EVENTS: &str = "process_events";
/// Applies one recorded Stripe event (a batch's event that failed, retried alone).
pub const PROCESS_EVENT: &str = "process_event";
/// Asks Stripe where one payment is and applies the answer.
pub const RECONCILE_PAYMENT: &str = "reconcile_payment";

/// Runs the payments queue's jobs.
pub struct PaymentJobs {
    /// Applies reports.
    pub ledger: Ledger,
    /// Tells orders.
    pub orders: OrdersClient,
    /// Attempts of an event or reconciliation job.
    pub event_attempts: i32,
}

fn field<'a>(job: &'a ClaimedJob, name: &str) -> Result<&'a str, JobError> {
    job.payload[name]
        .as_str()
        .ok_or_else(|| JobError::Permanent(format!("job has no {name}")))
}

fn db(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(format!("database: {e}"))
}

fn label(outcome: Transition) -> &'static str {
    match outcome {
        Transition::Move => "moved",
        Transition::Same => "same",
        Transition::Stale => "stale",
        Transition::Conflict => "conflict",
    }
}

impl From<ReconcileError> for JobError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::Provider(ProviderError::Unavailable(_)) | ReconcileError::Db(_) => {
                JobError::Transient(e.to_string())
            }
            other => JobError::Permanent(other.to_string()),
        }
    }
}

/// The span of applying event `event_id` to `payment`, linked to the checkout that created
/// the payment: where a webhook's trace meets the checkout's. The link is part of the span
/// from its start.
fn checkout_span(event_id: &str, payment: &Payment) -> tracing::Span {
    let span = tracing::info_span!("apply_event", event = event_id, payment = %payment.id);
    if let Some(traceparent) = &payment.traceparent {
        common::telemetry::link_traceparent(&span, traceparent);
    }
    span
}

/// Whether `effect` would mark `payment` paid: then Stripe's word is asked for instead of
/// the event's.
fn needs_proof(payment: &Payment, effect: &Effect) -> bool {
    effect.report.status.is_paid()
        && !payment.status.is_paid()
        && matches!(
            transition(payment.status, effect.report.status),
            Transition::Move | Transition::Conflict
        )
}

impl Handler for PaymentJobs {
    fn kinds(&self) -> &'static [&'static str] {
        &[
            PROCESS_EVENTS,
            PROCESS_EVENT,
            NOTIFY_ORDERS,
            RECONCILE_PAYMENT,
            SETTLE_PAYMENT,
        ]
    }

    async fn handle(&self, job: &ClaimedJob) -> Result<(), JobError> {
        match job.kind.as_str() {
            PROCESS_EVENTS => self.process_batch(job).await,
            PROCESS_EVENT => self.process_event(field(job, "event_id")?).await,
            NOTIFY_ORDERS => self.notify(job).await,
            RECONCILE_PAYMENT => self
                .ledger
                .reconcile(field(job, "payment_id")?, None)
                .await
                .map(drop)
                .map_err(JobError::from),
            SETTLE_PAYMENT => self
                .ledger
                .settle(field(job, "payment_id")?)
                .await
                .map(drop)
                .map_err(JobError::from),
            other => Err(JobError::Permanent(format!("unknown job kind {other}"))),
        }
    }

    async fn on_dead(&self, job: &ClaimedJob, error: &str) -> Result<(), String> {
        metrics::counter!("dead_letters_total", "kind" => job.kind.clone()).increment(1);
        // Nothing to undo: the payment is as Stripe left it. The reconciler settles payments
        // whose events died and settles closed payments again; a notification orders never
        // took is replayable by an operator.
        tracing::error!(kind = %job.kind, payload = %job.payload, error, "payments job is a dead letter");
        Ok(())
    }
}

impl PaymentJobs {
    /// The job that checks payment `payment_id` with Stripe.
    pub fn reconcile_job(&self, payment_id: &str) -> NewJob {
        NewJob::new(RECONCILE_PAYMENT, json!({ "payment_id": payment_id }))
            .dedup(format!("reconcile:{payment_id}"))
            .attempts(self.event_attempts)
    }

    /// The job that retries event `event_id` alone.
    pub fn event_job(&self, event_id: &str) -> NewJob {
        NewJob::new(PROCESS_EVENT, json!({ "event_id": event_id }))
            .dedup(format!("event:{event_id}"))
            .attempts(self.event_attempts)
    }

    async fn process_batch(&self, job: &ClaimedJob) -> Result<(), JobError> {
        let ids: Vec<&str> = job.payload["event_ids"]
            .as_array()
            .ok_or_else(|| JobError::Permanent("job has no event_ids".to_owned()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        // The batch's events apply in one transaction; what that leaves (an event whose
        // payment is not committed yet, or not ours), or all of them if it fails, goes one by one.
        let alone = match self.apply_together(&ids).await {
            Ok(left) => left,
            Err(e) => {
                tracing::warn!(error = %e, events = ids.len(), "batch failed; applying its events one by one");
                ids
            }
        };
        let mut failed = Vec::new();
        for id in alone {
            if let Err(e) = self.process_event(id).await {
                tracing::warn!(event = id, error = %e, "event failed; retrying it alone");
                failed.push(id);
            }
        }
        if !failed.is_empty() {
            let mut tx = common::db::begin(&self.ledger.pool).await.map_err(db)?;
            for id in failed {
                self.ledger
                    .queue
                    .enqueue(&mut tx, self.event_job(id))
                    .await
                    .map_err(db)?;
            }
            self.ledger.queue.commit(tx).await.map_err(db)?;
        }
        Ok(())
    }

    /// Applies the events of `ids` whose payment exists, in one transaction (each event to the
    /// payment as the one before left it, in the order of `ids`); answers the ids it left.
    async fn apply_together<'a>(&self, ids: &[&'a str]) -> Result<Vec<&'a str>, JobError> {
        let mut tx = common::db::begin(&self.ledger.pool).await.map_err(db)?;
        let rows = store::events::lock_with_payments(&mut tx, ids)
            .await
            .map_err(db)?;
        let mut payments: HashMap<String, Payment> = HashMap::new();
        let mut done = Vec::with_capacity(rows.len());
        let mut applied = Vec::with_capacity(rows.len());
        // A payment with an event that needs Stripe's word takes the rest of its events alone,
        // after it, in order.
        let mut deferred = std::collections::HashSet::new();
        for (event_id, effect, payment) in rows {
            if deferred.contains(&payment.id) {
                continue;
            }
            let payment = payments.entry(payment.id.clone()).or_insert(payment);
            if needs_proof(payment, &effect) {
                deferred.insert(payment.id.clone());
                continue;
            }
            let span = checkout_span(&event_id, payment);
            let outcome = self
                .ledger
                .apply(&mut tx, payment, &effect.report)
                .instrument(span)
                .await
                .map_err(db)?;
            applied.push((payment.id.clone(), effect.report.status, outcome));
            done.push((event_id, label(outcome)));
        }
        store::events::processed_all(&mut tx, &done)
            .await
            .map_err(db)?;
        self.ledger.queue.commit(tx).await.map_err(db)?;
        for (payment_id, reported, outcome) in applied {
            self.applied(&payments[&payment_id], reported, outcome)
                .await?;
        }
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !done.iter().any(|(done, _)| done == id))
            .collect())
    }

    /// Counts an applied event; in doubt (a stale or contradicting report), Stripe's
    /// current view decides.
    async fn applied(
        &self,
        payment: &Payment,
        reported: Status,
        outcome: Transition,
    ) -> Result<(), JobError> {
        metrics::counter!("payments_events_applied_total", "reported" => reported.as_str(), "outcome" => label(outcome))
            .increment(1);
        if matches!(outcome, Transition::Stale | Transition::Conflict) {
            tracing::info!(payment = %payment.id, %reported, current = %payment.status, "out-of-order event; asking Stripe");
            self.ledger.reconcile(&payment.id, None).await?;
        }
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn process_event(&self, event_id: &str) -> Result<(), JobError> {
        let pool = &self.ledger.pool;
        let effect = store::events::find(pool, event_id)
            .await
            .map_err(db)?
            .ok_or_else(|| JobError::Permanent(format!("no event {event_id}")))?;
        let mut tx = common::db::begin(pool).await.map_err(db)?;
        let payment = store::payments::lock_by_provider(&mut tx, &effect.intent_id)
            .await
            .map_err(db)?;
        let Some(mut payment) = payment else {
            tx.rollback().await.map_err(db)?;
            return self.process_unmatched(event_id, &effect).await;
        };
        let span = checkout_span(event_id, &payment);
        async move {
            if needs_proof(&payment, &effect) {
                tx.rollback().await.map_err(db)?;
                return self.prove(event_id, &payment, &effect).await;
            }
            let outcome = self
                .ledger
                .apply(&mut tx, &mut payment, &effect.report)
                .await
                .map_err(db)?;
            store::events::processed(&mut tx, event_id, label(outcome))
                .await
                .map_err(db)?;
            self.ledger.queue.commit(tx).await.map_err(db)?;
            self.applied(&payment, effect.report.status, outcome).await
        }
        .instrument(span)
        .await
    }

    /// An event that would mark `payment` paid: Stripe is asked and its word applied, so a
    /// forged or mistaken event costs one API call and changes nothing.
    async fn prove(
        &self,
        event_id: &str,
        payment: &Payment,
        effect: &Effect,
    ) -> Result<(), JobError> {
        let mismatch = effect.mismatch(&payment.order_id, payment.amount, &payment.currency);
        if let Some(why) = &mismatch {
            metrics::counter!("payments_event_mismatches_total").increment(1);
            tracing::error!(event = event_id, payment = %payment.id, why, "a payment event disagrees with its payment; not applied, asking Stripe");
        }
        let outcome = self.ledger.reconcile(&payment.id, Some(event_id)).await?;
        let label = if mismatch.is_some() {
            "mismatch"
        } else {
            label(outcome)
        };
        self.mark(event_id, label).await?;
        metrics::counter!("payments_events_applied_total", "reported" => effect.report.status.as_str(), "outcome" => label)
            .increment(1);
        Ok(())
    }

    /// An event about a PaymentIntent no payment of ours holds. Without our metadata it is
    /// another system's. With it, Stripe says whether the intent is real: one whose create
    /// answer was lost is linked to its payment; one for an order with no payment at all is
    /// recorded (closed) and settled. It never waits for a payment that will not come.
    async fn process_unmatched(&self, event_id: &str, effect: &Effect) -> Result<(), JobError> {
        let Some(order_id) = effect.order_id.as_deref() else {
            // A PaymentIntent payments did not create (same Stripe account, other system).
            return self.mark(event_id, "not_ours").await;
        };
        let intent = match self.ledger.stripe.retrieve_intent(&effect.intent_id).await {
            Ok(intent) => intent,
            Err(ProviderError::Refused { status: 404, .. }) => {
                return self
                    .mismatched(event_id, "no such PaymentIntent at Stripe")
                    .await;
            }
            Err(e) => return Err(ReconcileError::Provider(e).into()),
        };
        if intent.order_id.as_deref() != Some(order_id) {
            return self
                .mismatched(event_id, "the PaymentIntent names another order")
                .await;
        }
        let mut tx = common::db::begin(&self.ledger.pool).await.map_err(db)?;
        let found = store::payments::lock_by_order(&mut tx, order_id)
            .await
            .map_err(db)?;
        let (mut payment, label) = match found {
            Some(payment) if payment.provider_id.is_none() => (payment, "linked"),
            Some(payment) if payment.provider_id.as_deref() == Some(intent.id.as_str()) => {
                // Its create answer was recorded since the event was looked up: the event is
                // the payment's own after all, and is applied as such (once: it matches now).
                tx.rollback().await.map_err(db)?;
                return Box::pin(self.process_event(event_id)).await;
            }
            Some(payment) => {
                tx.rollback().await.map_err(db)?;
                tracing::error!(event = event_id, order = order_id, intent = %intent.id, ours = ?payment.provider_id, status = %intent.status, "a second PaymentIntent names our order; needs an operator");
                return self
                    .mismatched(event_id, "the order's payment holds another PaymentIntent")
                    .await;
            }
            None => {
                let id = PaymentId::new();
                let adopted = store::payments::adopt(&mut tx, id.as_str(), &intent, order_id)
                    .await
                    .map_err(db)?
                    .ok_or_else(|| {
                        JobError::Transient(format!("order {order_id} got a payment meanwhile"))
                    })?;
                metrics::counter!("payments_adopted_total").increment(1);
                tracing::warn!(event = event_id, order = order_id, intent = %intent.id, "a PaymentIntent of ours had no payment; recorded it closed, to be settled");
                (adopted, "adopted")
            }
        };
        if intent.amount != payment.amount
            || !intent
                .currency
                .eq_ignore_ascii_case(payment.currency.trim())
        {
            tracing::error!(event = event_id, payment = %payment.id, intent = %intent.id, "the PaymentIntent is for another amount than its payment");
            metrics::counter!("payments_event_mismatches_total").increment(1);
        }
        let span = checkout_span(event_id, &payment);
        async move {
            let link = (label == "linked").then_some(&intent);
            // A payment whose create got no answer, with its order still open: orders asks
            // again (the saga's retry, or the sweeper's) and learns the outcome from that
            // answer, as it would have; telling it now as well would be a second report.
            let report = Report {
                answered: label == "linked" && payment.closed_at.is_none(),
                ..Report::from(&intent)
            };
            self.ledger
                .apply_with(&mut tx, &mut payment, &report, link)
                .await
                .map_err(db)?;
            self.ledger
                .settle_if_needed(&mut tx, &payment)
                .await
                .map_err(db)?;
            store::events::processed(&mut tx, event_id, label)
                .await
                .map_err(db)?;
            self.ledger.queue.commit(tx).await.map_err(db)
        }
        .instrument(span)
        .await
    }

    /// Records an event that is not applied because it disagrees with what Stripe or our
    /// payments hold; counted, and logged as an error (an alert).
    async fn mismatched(&self, event_id: &str, why: &str) -> Result<(), JobError> {
        metrics::counter!("payments_event_mismatches_total").increment(1);
        tracing::error!(event = event_id, why, "payment event not applied");
        self.mark(event_id, "mismatch").await
    }

    /// Notes how processing event `event_id` ended.
    async fn mark(&self, event_id: &str, outcome: &str) -> Result<(), JobError> {
        let mut tx = common::db::begin(&self.ledger.pool).await.map_err(db)?;
        store::events::processed(&mut tx, event_id, outcome)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn notify(&self, job: &ClaimedJob) -> Result<(), JobError> {
        let order_id = field(job, "order_id")?;
        let mut event = json!({
            "payment_id": field(job, "payment_id")?,
            "status": field(job, "status")?,
        });
        for optional in ["reason", "event_id"] {
            if let Some(value) = job.payload.get(optional).filter(|v| !v.is_null()) {
                event[optional] = Value::clone(value);
            }
        }
        let result = self.orders.payment_event(order_id, &event).await;
        let outcome = match &result {
            Ok(()) => "acknowledged",
            Err(NotifyError::Transient(_)) => "retry",
            Err(NotifyError::Refused { .. }) => "refused",
        };
        metrics::counter!("payments_notifications_total", "outcome" => outcome).increment(1);
        result.map_err(|e| match e {
            NotifyError::Transient(e) => JobError::Transient(format!("orders: {e}")),
            refused @ NotifyError::Refused { .. } => JobError::Permanent(refused.to_string()),
        })
    }
}
