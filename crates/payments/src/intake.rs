//! Webhook intake with group commit. A webhook may only be acknowledged once its event and
//! its processing job are durable, and one Postgres commit per event caps intake at the
//! disk's flush rate. So concurrent webhooks hand their events to a few writer tasks; each
//! writer records everything waiting in one transaction (the events, then one job that
//! processes the new ones) and answers every waiting request after the commit. Under load
//! batches grow by themselves; alone, an event is written at once.
//!
//! The writers work outside any request, so each request hands its trace context over with
//! its event: a batch of one request's events is processed as a child of that request, a
//! batch of several requests' events in a trace of its own linked to each of them.

use std::{collections::BTreeMap, sync::Arc};

use common::queue::{NewJob, Queue};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    jobs::PROCESS_EVENTS,
    store::events::{self, Incoming},
};

/// What became of a recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time seen: its processing job is queued.
    New,
    /// Seen before (or another copy in the same batch): nothing more to do.
    Duplicate,
}

/// The event could not be recorded; the webhook must not be acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("recording the event failed: {0}")]
pub struct IntakeError(String);

struct Pending {
    event: Incoming,
    /// The request's `traceparent`.
    trace: Option<String>,
    reply: oneshot::Sender<Result<Recorded, IntakeError>>,
}

/// Hands events to the writers.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Pending>,
}

/// What the writers need.
#[derive(Clone)]
struct Sink {
    pool: PgPool,
    queue: Queue,
    attempts: i32,
    batch_max: usize,
}

impl Intake {
    /// Starts `writers` writer tasks recording up to `batch_max` events per transaction; the
    /// new events of a batch get one processing job with `attempts` attempts. The writers
    /// stop when every handle is dropped and what they hold is written.
    pub fn start(
        pool: PgPool,
        queue: Queue,
        attempts: i32,
        batch_max: usize,
        writers: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(batch_max * writers * 2);
        let rx = Arc::new(Mutex::new(rx));
        let sink = Sink {
            pool,
            queue,
            attempts,
            batch_max,
        };
        for _ in 0..writers {
            tokio::spawn(write_batches(rx.clone(), sink.clone()));
        }
        Self { tx }
    }

    /// Records `event` durably; answers once it is committed.
    pub async fn record(&self, event: Incoming) -> Result<Recorded, IntakeError> {
        let (reply, answer) = oneshot::channel();
        let trace = common::telemetry::current_traceparent();
        self.tx
            .send(Pending {
                event,
                trace,
                reply,
            })
            .await
            .map_err(|_| IntakeError("the intake has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| IntakeError("the writer stopped".to_owned()))?
    }
}

async fn write_batches(rx: Arc<Mutex<mpsc::Receiver<Pending>>>, sink: Sink) {
    loop {
        let batch = {
            // One writer at a time takes everything waiting; the others are writing.
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < sink.batch_max {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        metrics::histogram!("payments_webhook_batch_size").record(batch.len() as f64);
        sink.write(batch).await;
    }
}

impl Sink {
    async fn write(&self, batch: Vec<Pending>) {
        // Copies of one event in a batch become one row; ids sorted so that concurrent
        // batches lock rows in the same order and cannot deadlock.
        let mut groups: BTreeMap<String, (Incoming, Vec<oneshot::Sender<_>>)> = BTreeMap::new();
        let mut traces: Vec<String> = Vec::new();
        for Pending {
            event,
            trace,
            reply,
        } in batch
        {
            if let Some(trace) = trace
                && !traces.contains(&trace)
            {
                traces.push(trace);
            }
            match groups.get_mut(&event.id) {
                Some((first, replies)) => {
                    first.copies += 1;
                    replies.push(reply);
                }
                None => {
                    groups.insert(event.id.clone(), (event, vec![reply]));
                }
            }
        }
        let (events, replies): (Vec<Incoming>, Vec<_>) = groups.into_values().unzip();
        let started = std::time::Instant::now();
        let committed = self.commit(&events, &traces).await;
        metrics::histogram!("payments_webhook_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        match committed {
            Ok(new) => answer(&events, replies, |id| Ok(new.iter().any(|n| n == id))),
            Err(e) if events.len() > 1 => {
                // One event Postgres refuses must not fail the others: retry them one by one.
                tracing::warn!(error = %e, events = events.len(), "batch failed; writing events one by one");
                for (event, replies) in events.into_iter().zip(replies) {
                    let outcome = self.commit(std::slice::from_ref(&event), &traces).await;
                    answer(&[event], vec![replies], |_| {
                        outcome
                            .as_ref()
                            .map(|new| !new.is_empty())
                            .map_err(ToString::to_string)
                    });
                }
            }
            Err(e) => answer(&events, replies, |_| Err(e.to_string())),
        }
    }

    /// Records `events` and queues one job processing the new ones, in one transaction; the
    /// job carries `traces`, the contexts of the requests that brought them.
    async fn commit(
        &self,
        events: &[Incoming],
        traces: &[String],
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = common::db::begin(&self.pool).await?;
        let new = events::record(&mut tx, events).await?;
        if !new.is_empty() {
            let job =
                NewJob::new(PROCESS_EVENTS, json!({ "event_ids": new })).attempts(self.attempts);
            self.queue.enqueue(&mut tx, traced(job, traces)).await?;
        }
        self.queue.commit(tx).await?;
        Ok(new)
    }
}

/// `job` as a child of the one request in `traces`, or linked to each of several.
fn traced(job: NewJob, traces: &[String]) -> NewJob {
    match traces {
        [one] => job.child_of(one.clone()),
        many => many.iter().cloned().fold(job, NewJob::link),
    }
}

/// Answers the requests of each event: the first copy of a new event is `New`, the rest
/// `Duplicate`; `verdict` says whether an event was new.
fn answer(
    events: &[Incoming],
    replies: Vec<Vec<oneshot::Sender<Result<Recorded, IntakeError>>>>,
    verdict: impl Fn(&str) -> Result<bool, String>,
) {
    for (event, replies) in events.iter().zip(replies) {
        let verdict = verdict(&event.id);
        for (i, reply) in replies.into_iter().enumerate() {
            let result = match &verdict {
                Ok(true) if i == 0 => Ok(Recorded::New),
                Ok(_) => Ok(Recorded::Duplicate),
                Err(e) => Err(IntakeError(e.clone())),
            };
            // The request may have gone (client timeout); the event is recorded regardless.
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const SECOND: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn job() -> NewJob {
        NewJob::new(PROCESS_EVENTS, json!({ "event_ids": ["evt_1"] }))
    }

    #[test]
    fn a_batch_of_one_request_is_processed_as_its_child() {
        let job = traced(job(), &[FIRST.to_owned()]);
        assert_eq!(job.parent.as_deref(), Some(FIRST));
        assert!(job.links.is_empty());
    }

    #[test]
    fn a_batch_of_several_requests_links_to_each() {
        let job = traced(job(), &[FIRST.to_owned(), SECOND.to_owned()]);
        assert_eq!(job.parent, None);
        assert_eq!(job.links, [FIRST, SECOND]);
    }
}
