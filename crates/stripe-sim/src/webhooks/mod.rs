//! Webhook delivery: every emitted event of an enabled type goes, signed, to every configured
//! endpoint.
//!
//! A single dispatcher task receives events in the order they happened and applies the
//! delivery controls (drop, hold back and reverse, duplicate, delay) before handing each copy
//! to the endpoint's worker. Nothing here ever blocks an API response.

mod delivery;
mod signature;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

pub use delivery::{DeliveryOutcome, DeliveryRecord};
pub use signature::signature_header;

use self::delivery::{Deliverer, Job};
use crate::controls::Controls;
use crate::objects::Event;
use crate::{Config, ids, lock};

/// An event waiting for the dispatcher.
#[derive(Debug)]
struct Outgoing {
    event: Arc<Event>,
    controls: Controls,
    endpoints: Arc<[String]>,
    published: Instant,
    generation: u64,
}

#[derive(Debug)]
enum Command {
    Deliver(Outgoing),
    Flush,
    Reset,
}

/// Handle to the delivery machinery.
#[derive(Debug)]
pub(crate) struct Webhooks {
    tx: mpsc::UnboundedSender<Command>,
    endpoints: Mutex<Arc<[String]>>,
    /// The types delivered (`None`: all), as a Stripe endpoint's `enabled_events`.
    enabled: Option<Vec<String>>,
    deliverer: Arc<Deliverer>,
}

impl Webhooks {
    /// Starts the dispatcher; must run inside a Tokio runtime.
    pub(crate) fn start(config: &Config) -> Self {
        let deliverer = Arc::new(Deliverer::new(config));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(rx, Arc::clone(&deliverer)));
        Self {
            tx,
            endpoints: Mutex::new(config.webhook_urls.clone().into()),
            enabled: config.webhook_events.clone(),
            deliverer,
        }
    }

    /// The current endpoints.
    pub(crate) fn endpoints(&self) -> Arc<[String]> {
        Arc::clone(&lock(&self.endpoints))
    }

    /// Replaces the endpoints for events published from now on.
    pub(crate) fn set_endpoints(&self, urls: Vec<String>) {
        *lock(&self.endpoints) = urls.into();
    }

    /// Queues `event` for `endpoints`, if its type is enabled; returns at once.
    pub(crate) fn publish(&self, event: Arc<Event>, controls: Controls, endpoints: Arc<[String]>) {
        if self
            .enabled
            .as_ref()
            .is_some_and(|enabled| !enabled.iter().any(|kind| kind == event.kind.as_str()))
        {
            return;
        }
        let outgoing = Outgoing {
            event,
            controls,
            endpoints,
            published: Instant::now(),
            generation: self.deliverer.generation.load(Ordering::SeqCst),
        };
        // The dispatcher lives as long as this handle, so the send cannot fail.
        let _ = self.tx.send(Command::Deliver(outgoing));
    }

    /// Releases events held back for reordering.
    pub(crate) fn flush(&self) {
        let _ = self.tx.send(Command::Flush);
    }

    /// Abandons queued and retrying deliveries and clears the log.
    pub(crate) fn reset(&self) {
        self.deliverer.generation.fetch_add(1, Ordering::SeqCst);
        self.deliverer.log.clear();
        let _ = self.tx.send(Command::Reset);
    }

    /// The delivery log.
    pub(crate) fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.deliverer.log.all()
    }

    /// A live feed of delivery attempts.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<DeliveryRecord> {
        self.deliverer.log.subscribe()
    }
}

async fn dispatch(mut rx: mpsc::UnboundedReceiver<Command>, deliverer: Arc<Deliverer>) {
    let mut workers: HashMap<String, mpsc::UnboundedSender<Job>> = HashMap::new();
    let mut held: Vec<Outgoing> = Vec::new();
    while let Some(command) = rx.recv().await {
        match command {
            Command::Deliver(outgoing) => {
                let window = usize::try_from(outgoing.controls.webhook_reorder_window).unwrap_or(0);
                if window >= 2 {
                    held.push(outgoing);
                    if held.len() >= window {
                        for outgoing in held.drain(..).rev() {
                            send(outgoing, &mut workers, &deliverer);
                        }
                    }
                } else {
                    // Reordering was switched off: what was held goes first.
                    for earlier in held.drain(..).rev() {
                        send(earlier, &mut workers, &deliverer);
                    }
                    send(outgoing, &mut workers, &deliverer);
                }
            }
            Command::Flush => {
                for outgoing in held.drain(..).rev() {
                    send(outgoing, &mut workers, &deliverer);
                }
            }
            Command::Reset => held.clear(),
        }
    }
}

fn send(
    outgoing: Outgoing,
    workers: &mut HashMap<String, mpsc::UnboundedSender<Job>>,
    deliverer: &Arc<Deliverer>,
) {
    let controls = outgoing.controls;
    if ids::chance() < controls.webhook_drop_share {
        for url in outgoing.endpoints.iter() {
            deliverer.record_drop(url, &outgoing.event);
        }
        return;
    }
    let due = outgoing.published + Duration::from_millis(controls.webhook_delay_ms);
    for url in outgoing.endpoints.iter() {
        let worker = workers
            .entry(url.clone())
            .or_insert_with(|| deliverer.spawn_worker(url.clone()));
        for copy in 1..=controls.webhook_copies.max(1) {
            let job = Job {
                event: Arc::clone(&outgoing.event),
                copy,
                due,
                generation: outgoing.generation,
            };
            // A worker only stops when the dispatcher drops its queue.
            let _ = worker.send(job);
        }
    }
}
