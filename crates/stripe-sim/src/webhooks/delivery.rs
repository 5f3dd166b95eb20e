//! Delivering one event to one endpoint: sign, POST, record, retry with backoff.
//!
//! Each endpoint has a worker that starts first attempts in the order events happened, at
//! most `SIM_WEBHOOK_CONCURRENCY` at once (1: each waits for the one before); a failed
//! delivery moves to its own retry task, so one failing event never holds back the ones behind
//! it (as on Stripe, retries arrive out of order).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::time::Instant;

use super::signature::signature_header;
use crate::objects::Event;
use crate::{ids, lock};

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// It did not; another attempt follows.
    Retrying,
    /// It did not, and that was the last attempt.
    Failed,
    /// Not sent at all (`webhook_drop_share`).
    Dropped,
}

/// One line of the delivery log (`GET /_sim/deliveries`).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    /// `evt_…`.
    pub event_id: String,
    /// E.g. `payment_intent.succeeded`.
    pub event_type: &'static str,
    /// The endpoint.
    pub url: String,
    /// Which copy of the event (1 unless duplicates are on).
    pub copy: u32,
    /// Attempt number, from 1 (0 for a dropped event).
    pub attempt: u32,
    /// HTTP status the endpoint answered.
    pub status: Option<u16>,
    /// Why no status was received.
    pub error: Option<String>,
    /// How the attempt ended.
    pub outcome: DeliveryOutcome,
    /// When the attempt ended, Unix seconds.
    pub at: i64,
}

/// The delivery log, with live updates for whoever waits on it.
#[derive(Debug)]
pub(crate) struct DeliveryLog {
    records: Mutex<Vec<DeliveryRecord>>,
    updates: broadcast::Sender<DeliveryRecord>,
}

impl DeliveryLog {
    fn new() -> Self {
        Self {
            records: Mutex::new(Vec::new()),
            updates: broadcast::channel(1024).0,
        }
    }

    /// Appends a record and announces it.
    pub(crate) fn push(&self, record: DeliveryRecord) {
        lock(&self.records).push(record.clone());
        // Nobody listening is fine.
        let _ = self.updates.send(record);
    }

    /// Every record, in the order attempts ended.
    pub(crate) fn all(&self) -> Vec<DeliveryRecord> {
        lock(&self.records).clone()
    }

    /// Forgets every record.
    pub(crate) fn clear(&self) {
        lock(&self.records).clear();
    }

    /// A live feed of new records.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<DeliveryRecord> {
        self.updates.subscribe()
    }
}

/// One copy of one event, bound for one endpoint.
#[derive(Debug)]
pub(crate) struct Job {
    pub event: Arc<Event>,
    pub copy: u32,
    pub due: Instant,
    pub generation: u64,
}

/// What every delivery needs: HTTP client, secret, retry policy, log.
#[derive(Debug)]
pub(crate) struct Deliverer {
    client: reqwest::Client,
    secret: String,
    max_attempts: u32,
    retry_base: Duration,
    retry_max: Duration,
    concurrency: usize,
    pub(crate) log: DeliveryLog,
    /// Bumped by a reset; jobs of an older generation are abandoned.
    pub(crate) generation: AtomicU64,
}

impl Deliverer {
    /// A deliverer with the client and retry policy from `config`.
    pub(crate) fn new(config: &crate::Config) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Self {
            client,
            secret: config.webhook_secret.clone(),
            max_attempts: config.webhook_max_attempts.max(1),
            retry_base: config.webhook_retry_base,
            retry_max: config.webhook_retry_max,
            concurrency: config.webhook_concurrency.max(1),
            log: DeliveryLog::new(),
            generation: AtomicU64::new(0),
        }
    }

    fn is_current(&self, job: &Job) -> bool {
        job.generation == self.generation.load(Ordering::SeqCst)
    }

    /// Starts the worker for `url` and returns its queue.
    pub(crate) fn spawn_worker(self: &Arc<Self>, url: String) -> mpsc::UnboundedSender<Job> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let this = Arc::clone(self);
        let in_flight = Arc::new(Semaphore::new(self.concurrency));
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                tokio::time::sleep_until(job.due).await;
                if !this.is_current(&job) {
                    continue;
                }
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    return;
                };
                let (this, url) = (Arc::clone(&this), url.clone());
                tokio::spawn(async move {
                    let delivered = this.attempt(&url, &job, 1).await;
                    drop(permit);
                    if !delivered {
                        this.retry(url, job).await;
                    }
                });
            }
        });
        tx
    }

    async fn retry(self: Arc<Self>, url: String, job: Job) {
        for attempt in 2..=self.max_attempts {
            tokio::time::sleep(self.backoff(attempt - 1)).await;
            if !self.is_current(&job) || self.attempt(&url, &job, attempt).await {
                return;
            }
        }
    }

    /// Delay before the attempt after `failed` failed attempts: base, 2×base, 4×base, … capped.
    fn backoff(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }

    /// Makes one attempt and records it; true when the endpoint took the event.
    async fn attempt(&self, url: &str, job: &Job, attempt: u32) -> bool {
        let signature = signature_header(&self.secret, ids::now(), &job.event.payload);
        let result = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .header(USER_AGENT, "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .header("stripe-signature", signature)
            .body(job.event.payload.clone())
            .send()
            .await;
        let (status, error) = match result {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(err) => (None, Some(error_chain(&err))),
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let outcome = if delivered {
            DeliveryOutcome::Delivered
        } else if attempt >= self.max_attempts {
            DeliveryOutcome::Failed
        } else {
            DeliveryOutcome::Retrying
        };
        tracing::debug!(event = %job.event.id, url, attempt, ?status, ?outcome, "webhook attempt");
        self.log.push(DeliveryRecord {
            event_id: job.event.id.clone(),
            event_type: job.event.kind.as_str(),
            url: url.to_owned(),
            copy: job.copy,
            attempt,
            status,
            error,
            outcome,
            at: ids::now(),
        });
        delivered
    }

    /// Records that `event` was deliberately not sent to `url`.
    pub(crate) fn record_drop(&self, url: &str, event: &Event) {
        self.log.push(DeliveryRecord {
            event_id: event.id.clone(),
            event_type: event.kind.as_str(),
            url: url.to_owned(),
            copy: 1,
            attempt: 0,
            status: None,
            error: None,
            outcome: DeliveryOutcome::Dropped,
            at: ids::now(),
        });
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
