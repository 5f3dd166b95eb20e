//! The route flags a process routes by: an immutable snapshot swapped atomically, kept in
//! step with Postgres through Redis pub/sub and a periodic resync. Routing reads the
//! snapshot and nothing else, so when Postgres or Redis is down the last snapshot keeps
//! serving. Every write goes to Postgres first, then into the snapshot, then onto the bus.

pub mod snapshot;
pub mod store;
pub mod sync;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::{ArcSwap, Guard};
use common::redis::Connection;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    group::Group,
    rollback::{Rollback, Trip},
};
use snapshot::{FlagRecord, Snapshot};
use store::{Actor, AuditEntry, Change};

/// The flags of this process and the means to change them everywhere.
pub struct Flags {
    current: ArcSwap<Snapshot>,
    // Writers merge into the current snapshot one at a time; readers never wait.
    writer: Mutex<()>,
    rollback: Arc<Rollback>,
    pool: PgPool,
    redis: Connection,
    channel: String,
    shutdown: CancellationToken,
    // The runtime the flags were loaded on: a rollback tripped on a serving thread is written
    // from there, so it outlives that thread's connections.
    runtime: tokio::runtime::Handle,
}

impl Flags {
    /// Flags loaded from Postgres, changes published on `channel`.
    pub async fn load(
        pool: PgPool,
        redis: Connection,
        channel: String,
        rollback: Arc<Rollback>,
        shutdown: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        let flags = Self {
            current: ArcSwap::from_pointee(Snapshot::uniform(true, 0)),
            writer: Mutex::new(()),
            rollback,
            pool,
            redis,
            channel,
            shutdown,
            runtime: tokio::runtime::Handle::current(),
        };
        flags.resync().await?;
        Ok(flags)
    }

    /// The current snapshot; cheap, never blocks, reads no network.
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Merges records newer than what the snapshot holds. A group whose flag changed starts
    /// a fresh rollback window.
    pub fn apply(&self, records: &[FlagRecord]) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some((next, changed)) = self.current.load().merge(records) else {
            return;
        };
        for group in &changed {
            self.rollback.reset(*group);
            let flag = next.get(*group);
            tracing::info!(
                flag = group.name(),
                enabled = flag.enabled,
                rollout_percent = flag.rollout_percent,
                version = flag.version,
                "flag changed"
            );
            metrics::gauge!("gateway_rollout_percent", "group" => group.name())
                .set(f64::from(flag.rollout_percent));
        }
        self.current.store(Arc::new(next));
    }

    /// Reloads every flag from Postgres.
    pub async fn resync(&self) -> Result<(), sqlx::Error> {
        let records = store::load_all(&self.pool).await?;
        self.apply(&records);
        Ok(())
    }

    /// Changes a flag in Postgres, then here, then everywhere; `None` for a missing row.
    pub async fn change(
        &self,
        group: Group,
        change: Change,
        actor: Actor<'_>,
    ) -> Result<Option<FlagRecord>, sqlx::Error> {
        let record = store::change(&self.pool, group, change, actor).await?;
        if let Some(record) = &record {
            self.publish(record).await;
        }
        Ok(record)
    }

    /// Sets every flag nobody has changed since the seed to `rollout_percent`, here and
    /// everywhere (`GATEWAY_INITIAL_ROLLOUT`); answers the flags it changed.
    pub async fn initial_rollout(
        &self,
        rollout_percent: u8,
    ) -> Result<Vec<FlagRecord>, sqlx::Error> {
        let changed = store::initial_rollout(&self.pool, rollout_percent).await?;
        for record in &changed {
            self.publish(record).await;
        }
        Ok(changed)
    }

    /// `group`'s audit log, newest first.
    pub async fn audit(&self, group: Group, limit: i64) -> Result<Vec<AuditEntry>, sqlx::Error> {
        store::audit(&self.pool, group, limit).await
    }

    /// Rolls `trip.group` back: at once in this process, then in Postgres (retried until it
    /// lands or the process stops) and on the bus.
    pub fn trip(self: &Arc<Self>, trip: Trip) {
        let group = trip.group;
        {
            let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let current = self.current.load();
            let flag = *current.get(group);
            if !flag.is_ramped() {
                return;
            }
            // Same version: the row written below is newer and replaces this one.
            let lowered = snapshot::Flag {
                rollout_percent: 0,
                ..flag
            };
            self.current.store(Arc::new(current.with(group, lowered)));
        }
        metrics::counter!("gateway_rollbacks_total", "group" => group.name()).increment(1);
        metrics::gauge!("gateway_rollout_percent", "group" => group.name()).set(0.0);
        tracing::warn!(flag = group.name(), reason = %trip.reason, "rolling back");
        let flags = self.clone();
        self.runtime
            .spawn(async move { flags.persist_rollback(trip).await });
    }

    async fn persist_rollback(&self, trip: Trip) {
        let actor = Actor {
            name: "auto-rollback",
            action: "auto-rollback",
            reason: Some(&trip.reason),
        };
        let mut delay = Duration::from_millis(100);
        loop {
            match store::roll_back_if_ramped(&self.pool, trip.group, actor).await {
                Ok(Some(record)) => return self.publish(&record).await,
                // Another process rolled it back first, or someone set it to 0.
                Ok(None) => return drop(self.resync().await),
                Err(e) => {
                    tracing::error!(flag = trip.group.name(), error = %e, "rollback not saved yet; retrying");
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Applies a record here and tells every other process; a lost message is healed by
    /// their resync.
    async fn publish(&self, record: &FlagRecord) {
        self.apply(std::slice::from_ref(record));
        let payload = serde_json::to_string(record).expect("a flag record serialises");
        let mut redis = self.redis.clone();
        let mut attempts = 0;
        // A second attempt rides the connection the first one's failure re-opened.
        while let Err(e) = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(&payload)
            .query_async::<i64>(&mut redis)
            .await
        {
            attempts += 1;
            if attempts == 2 {
                tracing::warn!(flag = %record.name, error = %e, "flag change not broadcast; other processes pick it up on resync");
                return;
            }
        }
    }
}
