//! `NOTIFY` after the commit, coalesced.
//!
//! A `NOTIFY` inside a transaction takes the database-wide notification lock at commit and
//! holds it through that transaction's WAL flush, so every committing transaction that
//! notifies waits for the others'. A `Notifier` is told after the commit instead; one task
//! per notifier sends what accumulated while its last `NOTIFY` was on the way, as one
//! message, in a transaction that does not wait for the WAL (a notification is a hint about
//! data that is already durable: losing one in a crash loses nothing).

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicBool, Ordering},
};

use sqlx::PgPool;
use tokio::sync::Notify;

/// Postgres rejects payloads of 8,000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;

/// Sends notifications on one channel; clones share the task.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    channel: &'static str,
    pending: Mutex<Vec<String>>,
    wanted: Notify,
    started: AtomicBool,
}

impl Notifier {
    /// A notifier on `channel`.
    pub fn new(pool: PgPool, channel: &'static str) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                channel,
                pending: Mutex::default(),
                wanted: Notify::new(),
                started: AtomicBool::new(false),
            }),
        }
    }

    /// The channel.
    pub fn channel(&self) -> &'static str {
        self.inner.channel
    }

    /// Sends `payload` soon; call it after the commit it announces. Payloads that pile up
    /// meanwhile go in one message, distinct ones comma-separated (split them with
    /// `payloads`).
    pub fn send(&self, payload: &str) {
        let inner = &self.inner;
        if !inner.started.swap(true, Ordering::Relaxed) {
            tokio::spawn(run(inner.clone()));
        }
        let mut pending = inner.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending.iter().any(|p| p == payload) {
            pending.push(payload.to_owned());
        }
        drop(pending);
        inner.wanted.notify_one();
    }
}

/// The payloads one received message carries.
pub fn payloads(message: &str) -> impl Iterator<Item = &str> {
    message.split(',')
}

async fn run(inner: Arc<Inner>) {
    loop {
        inner.wanted.notified().await;
        let batch =
            std::mem::take(&mut *inner.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for message in messages(&batch) {
            let sent = sqlx::query(
                "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)",
            )
            .bind(inner.channel)
            .bind(&message)
            .execute(&inner.pool)
            .await;
            if let Err(e) = sent {
                tracing::debug!(channel = inner.channel, error = %e, "a notification was lost");
            }
        }
    }
}

/// `batch` joined with commas into messages under the payload limit.
fn messages(batch: &[String]) -> Vec<String> {
    let mut messages = Vec::new();
    let mut message = String::new();
    for payload in batch {
        if !message.is_empty() && message.len() + 1 + payload.len() > MAX_PAYLOAD {
            messages.push(std::mem::take(&mut message));
        }
        if !message.is_empty() {
            message.push(',');
        }
        message.push_str(payload);
    }
    if !message.is_empty() || !batch.is_empty() {
        messages.push(message);
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_split_under_the_payload_limit_and_read_back_whole() {
        let ids: Vec<String> = (0..2_000).map(|n| format!("ord_{n:08}")).collect();
        let messages = messages(&ids);
        assert!(messages.len() > 1);
        assert!(messages.iter().all(|m| m.len() <= MAX_PAYLOAD));
        let back: Vec<&str> = messages.iter().flat_map(|m| payloads(m)).collect();
        assert_eq!(back, ids);
    }
}
