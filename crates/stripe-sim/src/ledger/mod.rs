//! Everything the simulator knows: objects by id, and the events emitted so far.
//!
//! All changes happen through `&mut Ledger` while the caller holds the one lock around it;
//! each operation records the events it causes in [`Changes`], so a state change and its
//! events are published together and in order.

mod payment_intents;
mod refunds;
mod sim_actions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

pub use payment_intents::{ConfirmOptions, NewPaymentIntent};
pub use refunds::{NewRefund, RefundTarget};
pub use sim_actions::AuthenticationOutcome;

use crate::cards::{self, TestCard};
use crate::error::ApiError;
use crate::ids;
use crate::objects::{Charge, ChargeStatus, Dispute, Event, EventType, PaymentIntent, Refund};

/// A payment method minted from a test token.
#[derive(Debug, Clone, Copy)]
struct PaymentMethod {
    card: &'static TestCard,
    created: i64,
}

/// The simulator's state.
#[derive(Debug, Default)]
pub struct Ledger {
    intents: HashMap<String, PaymentIntent>,
    charges: HashMap<String, Charge>,
    refunds: HashMap<String, Refund>,
    disputes: HashMap<String, Dispute>,
    payment_methods: HashMap<String, PaymentMethod>,
    events: Vec<Arc<Event>>,
}

/// The events one operation causes, in the order they happened.
#[derive(Debug, Default)]
pub struct Changes {
    events: Vec<(EventType, Value)>,
}

impl Changes {
    /// Records that `kind` happened to the object now rendered as `object`.
    pub fn push(&mut self, kind: EventType, object: Value) {
        self.events.push((kind, object));
    }

    /// The recorded events.
    pub fn into_events(self) -> Vec<(EventType, Value)> {
        self.events
    }
}

impl Ledger {
    /// Appends an emitted event to the log.
    pub fn record_event(&mut self, event: Arc<Event>) {
        self.events.push(event);
    }

    /// Every event emitted, oldest first.
    pub fn events(&self) -> &[Arc<Event>] {
        &self.events
    }

    /// One event by id.
    pub fn event(&self, id: &str) -> Option<Arc<Event>> {
        self.events.iter().find(|e| e.id == id).cloned()
    }

    /// A PaymentIntent's JSON; `expand` may name `latest_charge` to inline the charge.
    pub fn payment_intent_json(&self, id: &str, expand: &[String]) -> Result<Value, ApiError> {
        let pi = self.intent(id)?;
        let mut json = pi.to_json();
        if expand.iter().any(|e| e == "latest_charge")
            && let Some(charge) = pi.latest_charge.as_ref().and_then(|c| self.charges.get(c))
        {
            json["latest_charge"] = charge.to_json();
        }
        Ok(json)
    }

    /// Every PaymentIntent whose metadata holds all of `metadata`, by creation second then id,
    /// with the money it moved: `amount_refunded` over its charges, and each charge with its
    /// refunds. It is the whole account at a glance, for checking a run's books against one's
    /// own.
    pub fn intents_summary(&self, metadata: &BTreeMap<String, String>) -> Vec<Value> {
        let mut intents: Vec<&PaymentIntent> = self
            .intents
            .values()
            .filter(|pi| metadata.iter().all(|(k, v)| pi.metadata.get(k) == Some(v)))
            .collect();
        intents.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        intents
            .into_iter()
            .map(|pi| {
                let mut charges: Vec<&Charge> = self
                    .charges
                    .values()
                    .filter(|c| c.payment_intent == pi.id)
                    .collect();
                charges.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
                let amount_refunded: i64 = charges.iter().map(|c| c.amount_refunded).sum();
                let charges: Vec<Value> = charges
                    .into_iter()
                    .map(|c| {
                        let mut refunds: Vec<&Refund> =
                            self.refunds.values().filter(|r| r.charge == c.id).collect();
                        refunds.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
                        json!({
                            "id": c.id,
                            "status": if c.status == ChargeStatus::Succeeded { "succeeded" } else { "failed" },
                            "amount": c.amount,
                            "amount_captured": c.amount_captured,
                            "amount_refunded": c.amount_refunded,
                            "captured": c.captured,
                            "disputed": c.disputed,
                            "failure_code": c.failure.map(|d| d.decline_code),
                            "refunds": refunds.iter().map(|r| json!({
                                "id": r.id,
                                "amount": r.amount,
                                "metadata": r.metadata,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "id": pi.id,
                    "status": pi.status.as_str(),
                    "amount": pi.amount,
                    "amount_received": pi.amount_received,
                    "amount_refunded": amount_refunded,
                    "currency": pi.currency,
                    "created": pi.created,
                    "metadata": pi.metadata,
                    "payment_method": pi.payment_method,
                    "cancellation_reason": pi.cancellation_reason,
                    "last_payment_error": pi.last_payment_error.as_ref().map(|e| &e["code"]),
                    "charges": charges,
                })
            })
            .collect()
    }

    /// A Charge's JSON.
    pub fn charge_json(&self, id: &str) -> Result<Value, ApiError> {
        self.charges
            .get(id)
            .map(Charge::to_json)
            .ok_or_else(|| ApiError::resource_missing("charge", id, "id"))
    }

    /// A Refund's JSON.
    pub fn refund_json(&self, id: &str) -> Result<Value, ApiError> {
        self.refunds
            .get(id)
            .map(Refund::to_json)
            .ok_or_else(|| ApiError::resource_missing("refund", id, "id"))
    }

    fn intent(&self, id: &str) -> Result<&PaymentIntent, ApiError> {
        self.intents
            .get(id)
            .ok_or_else(|| ApiError::resource_missing("payment_intent", id, "intent"))
    }

    fn intent_mut(&mut self, id: &str) -> Result<&mut PaymentIntent, ApiError> {
        self.intents
            .get_mut(id)
            .ok_or_else(|| ApiError::resource_missing("payment_intent", id, "intent"))
    }

    /// Resolves a `payment_method` parameter: a test token mints a new `pm_…` (as Stripe does);
    /// a minted id is looked up.
    fn resolve_payment_method(
        &mut self,
        raw: &str,
    ) -> Result<(String, &'static TestCard), ApiError> {
        if let Some(pm) = self.payment_methods.get(raw) {
            return Ok((raw.to_owned(), pm.card));
        }
        let Some(card) = cards::lookup(raw) else {
            let mut err = ApiError::resource_missing("PaymentMethod", raw, "payment_method");
            err.status = axum::http::StatusCode::BAD_REQUEST;
            return Err(err);
        };
        let id = ids::new_id("pm");
        self.payment_methods.insert(
            id.clone(),
            PaymentMethod {
                card,
                created: ids::now(),
            },
        );
        Ok((id, card))
    }

    fn card_of(&self, pm_id: &str) -> &'static TestCard {
        self.payment_methods
            .get(pm_id)
            .map_or_else(cards::default_card, |pm| pm.card)
    }

    fn payment_method_json(&self, pm_id: &str) -> Value {
        let (card, created) = self
            .payment_methods
            .get(pm_id)
            .map_or((cards::default_card(), ids::now()), |pm| {
                (pm.card, pm.created)
            });
        card.payment_method_json(pm_id, created)
    }
}
