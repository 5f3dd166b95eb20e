//! The running simulator: its state, controls and webhook machinery behind one handle.
//!
//! Handlers and tests share a [`Sim`]; every lock inside is held only for a synchronous
//! step and never across an `.await`.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::controls::{Controls, ControlsUpdate};
use crate::error::ApiError;
use crate::idempotency::IdempotencyTable;
use crate::ledger::{Changes, Ledger};
use crate::objects::{Event, RequestRef};
use crate::webhooks::{DeliveryRecord, Webhooks};
use crate::{Config, lock};

/// Handle to a running simulator; cheap to clone.
#[derive(Clone, Debug)]
pub struct Sim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    api_key: Option<String>,
    ledger: Mutex<Ledger>,
    controls: Mutex<Controls>,
    idempotency: Mutex<IdempotencyTable>,
    webhooks: Webhooks,
}

impl Sim {
    /// A simulator with empty state; starts the webhook dispatcher, so it must be created
    /// inside a Tokio runtime.
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                api_key: config.api_key.clone(),
                ledger: Mutex::new(Ledger::default()),
                controls: Mutex::new(Controls::default()),
                idempotency: Mutex::new(IdempotencyTable::default()),
                webhooks: Webhooks::start(config),
            }),
        }
    }

    /// Current fault and delivery controls.
    pub fn controls(&self) -> Controls {
        *lock(&self.inner.controls)
    }

    /// Applies a partial change of the controls and returns the result.
    pub fn update_controls(&self, update: &ControlsUpdate) -> Result<Controls, String> {
        let next = {
            let mut controls = lock(&self.inner.controls);
            *controls = controls.apply(update)?;
            *controls
        };
        if next.webhook_reorder_window < 2 {
            self.inner.webhooks.flush();
        }
        Ok(next)
    }

    /// Every event emitted so far, oldest first, as Stripe renders them.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.inner.ledger)
            .events()
            .iter()
            .map(|e| e.json.clone())
            .collect()
    }

    /// Every PaymentIntent whose metadata holds all of `metadata`, by creation second then id,
    /// each with its status, amounts (`amount_received`, and `amount_refunded` over its
    /// charges), metadata and charges with their refunds.
    pub fn payment_intents(
        &self,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Vec<Value> {
        lock(&self.inner.ledger).intents_summary(metadata)
    }

    /// Every webhook delivery attempt so far, in the order they ended.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner.webhooks.deliveries()
    }

    /// A live feed of delivery attempts, for waiting on deliveries without polling.
    pub fn subscribe_deliveries(&self) -> broadcast::Receiver<DeliveryRecord> {
        self.inner.webhooks.subscribe()
    }

    /// Where events are delivered.
    pub fn webhook_endpoints(&self) -> Vec<String> {
        self.inner.webhooks.endpoints().to_vec()
    }

    /// Replaces the webhook endpoints; events emitted from now on go to these.
    pub fn set_webhook_endpoints(&self, urls: Vec<String>) {
        self.inner.webhooks.set_endpoints(urls);
    }

    /// Releases events held back for reordering.
    pub fn flush_webhooks(&self) {
        self.inner.webhooks.flush();
    }

    /// Forgets all objects, events, idempotency keys and deliveries and restores default
    /// controls; webhook endpoints stay as they are.
    pub fn reset(&self) {
        let mut ledger = lock(&self.inner.ledger);
        *ledger = Ledger::default();
        lock(&self.inner.idempotency).clear();
        *lock(&self.inner.controls) = Controls::default();
        self.inner.webhooks.reset();
    }

    /// Delivers an already emitted event again; false when there is no such event.
    pub fn resend_event(&self, id: &str) -> bool {
        let Some(event) = lock(&self.inner.ledger).event(id) else {
            return false;
        };
        let endpoints = self.inner.webhooks.endpoints();
        self.inner
            .webhooks
            .publish(event, self.controls(), endpoints);
        true
    }

    /// The only accepted secret key, when one is configured.
    pub(crate) fn api_key(&self) -> Option<&str> {
        self.inner.api_key.as_deref()
    }

    /// The idempotency key table; hold the guard only for one synchronous step.
    pub(crate) fn idempotency(&self) -> MutexGuard<'_, IdempotencyTable> {
        lock(&self.inner.idempotency)
    }

    /// Reads the ledger.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Ledger) -> T) -> T {
        f(&lock(&self.inner.ledger))
    }

    /// Runs one change against the ledger and publishes the events it caused — even when it
    /// fails, since a decline is both an error response and a `payment_failed` event.
    pub(crate) fn transact<T>(
        &self,
        request: &RequestRef,
        op: impl FnOnce(&mut Ledger, &mut Changes) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let controls = self.controls();
        let endpoints = self.inner.webhooks.endpoints();
        let mut ledger = lock(&self.inner.ledger);
        let mut changes = Changes::default();
        let result = op(&mut ledger, &mut changes);
        // Published under the ledger lock, so events leave in the order they happened.
        for (kind, object) in changes.into_events() {
            let event = Arc::new(Event::new(kind, object, request, endpoints.len()));
            tracing::debug!(event = %event.id, kind = kind.as_str(), "event emitted");
            ledger.record_event(Arc::clone(&event));
            self.inner
                .webhooks
                .publish(event, controls, Arc::clone(&endpoints));
        }
        result
    }
}
