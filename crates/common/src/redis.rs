//! The shared Redis connection: one multiplexed connection that reconnects by itself.
//! It is created lazily, so a service starts (and reports not-ready) while Redis is down,
//! and every command is bounded by a timeout so callers fail fast instead of hanging.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A Redis connection manager whose commands time out after `timeout`.
pub fn connect(url: &str, timeout: Duration) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // One attempt per command: a failed reconnect is retried by the next command,
        // so a request never waits through a long backoff ladder.
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100));
    ConnectionManager::new_lazy_with_config(client, config)
}
