//! Keeping a process's snapshot in step: a subscriber on the Redis channel applies each
//! published change as it comes, on its own connection, reconnecting in a loop; a periodic
//! resync from Postgres heals whatever the bus lost. Both end with the process.
//!
//! In a Redis Cluster a `PUBLISH` on any node reaches the subscribers of every node (the
//! cluster bus forwards it), so the subscriber holds a plain connection to one node and
//! moves on to the next seed node when that one is lost.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{Flags, snapshot::FlagRecord};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Clients for the nodes the subscriber may listen on: the server of a `redis://` URL, or
/// each seed node of a `redis+cluster://` URL, tried in turn.
pub fn subscriber_clients(url: &str) -> redis::RedisResult<Vec<redis::Client>> {
    match common::redis::cluster_nodes(url)? {
        None => Ok(vec![redis::Client::open(url)?]),
        Some(nodes) => nodes
            .iter()
            .map(|n| redis::Client::open(n.as_str()))
            .collect(),
    }
}

/// Starts the subscriber (on the first of `clients` that answers) and the resync loop.
pub fn spawn(
    flags: Arc<Flags>,
    clients: Vec<redis::Client>,
    channel: String,
    resync_every: Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(subscribe(flags.clone(), clients, channel, shutdown.clone()));
    tokio::spawn(resync(flags, resync_every, shutdown));
}

async fn subscribe(
    flags: Arc<Flags>,
    clients: Vec<redis::Client>,
    channel: String,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    for client in clients.iter().cycle() {
        if shutdown.is_cancelled() {
            return;
        }
        match listen(&flags, client, &channel, &shutdown, &mut backoff).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, ?backoff, "flag subscription lost; reconnecting"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Listens until shutdown (`Ok`) or until the connection is lost (`Err`).
async fn listen(
    flags: &Flags,
    client: &redis::Client,
    channel: &str,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await??;
    tokio::time::timeout(CONNECT_TIMEOUT, pubsub.subscribe(channel)).await??;
    *backoff = Duration::from_millis(100);
    // Whatever was published while we were not subscribed is lost: catch up now.
    if let Err(e) = flags.resync().await {
        tracing::warn!(error = %e, "resync after subscribing failed");
    }
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = messages.next() => {
                let Some(message) = message else {
                    anyhow::bail!("the subscription connection closed");
                };
                let payload: Vec<u8> = message.get_payload().unwrap_or_default();
                match serde_json::from_slice::<FlagRecord>(&payload) {
                    Ok(record) => flags.apply(&[record]),
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed flag message"),
                }
            }
        }
    }
}

async fn resync(flags: Arc<Flags>, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match flags.resync().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("flag resync works again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "flag resync failed; routing on the last snapshot");
            }
            Err(_) => {}
        }
    }
}
