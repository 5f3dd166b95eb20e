//! The shared Redis connection, to a single Redis or to a Redis Cluster, chosen by the URL.
//! `redis://host:port` is one server; `redis+cluster://host:port,host:port,...` names seed
//! nodes of a cluster, from which the client learns every master and the slots it owns.
//! Either way the connection reconnects by itself, is created lazily (a service starts, and
//! reports not-ready, while Redis is down), and every command is bounded by a timeout so
//! callers fail fast instead of hanging.

use std::time::Duration;

use redis::{
    Cmd, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

/// The scheme that marks a Redis Cluster URL.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A connection to a single Redis or to a Redis Cluster; cheap to clone, and every clone
/// shares the same sockets. Commands are routed by their keys in cluster mode, so callers
/// write the same code for both (multi-key scripts need their keys in one hash slot).
#[derive(Clone)]
pub enum Connection {
    /// One server.
    Single(ConnectionManager),
    /// A cluster: one multiplexed connection per node, slots refreshed on redirects.
    Cluster(ClusterConnection),
}

/// A connection for `url` whose commands time out after `timeout`.
pub fn connect(url: &str, timeout: Duration) -> RedisResult<Connection> {
    match cluster_nodes(url)? {
        None => {
            let client = redis::Client::open(url)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                // One attempt per command: a failed reconnect is retried by the next command,
                // so a request never waits through a long backoff ladder.
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(100));
            ConnectionManager::new_lazy_with_config(client, config).map(Connection::Single)
        }
        Some(nodes) => {
            let client = ClusterClient::builder(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // As above: a command tries once more after a redirect or a lost node, then
                // fails, and the node is reconnected in the background.
                .retries(1)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()?;
            // The connection takes its per-node timeouts from `config`; the builder's
            // response timeout also bounds a whole command, retries included.
            let config = ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            Ok(Connection::Cluster(
                client.get_pending_async_connection_with_config(config),
            ))
        }
    }
}

/// The seed nodes of a `redis+cluster://` URL as `redis://` URLs, or `None` for any other
/// URL. Credentials given once before the first host apply to every node.
pub fn cluster_nodes(url: &str) -> RedisResult<Option<Vec<String>>> {
    let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
        return Ok(None);
    };
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts: Vec<&str> = hosts
        .trim_end_matches('/')
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .collect();
    if hosts.is_empty() || hosts.iter().any(|host| host.contains('/')) {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "a redis+cluster:// URL lists host:port seed nodes separated by commas",
        )));
    }
    Ok(Some(
        hosts
            .iter()
            .map(|host| format!("redis://{credentials}{host}"))
            .collect(),
    ))
}

impl Connection {
    /// Whether Redis answers: a `PING` to the server, or to any one node of a cluster. A
    /// cluster with one master down still serves the slots of the others, so it counts as
    /// up; the requests for the lost master's keys answer 503 on their own.
    pub async fn ping(&mut self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Self::Single(conn) => ping.query_async::<()>(conn).await,
            Self::Cluster(conn) => conn
                .route_command(ping, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                .await
                .map(drop),
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_is_a_single_server() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379").unwrap(), None);
    }

    #[test]
    fn a_cluster_url_lists_its_seed_nodes_with_shared_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@10.0.0.1:7000, 10.0.0.2:7001/").unwrap(),
            Some(vec![
                "redis://:pw@10.0.0.1:7000".to_owned(),
                "redis://:pw@10.0.0.2:7001".to_owned(),
            ])
        );
    }

    #[test]
    fn a_cluster_url_without_nodes_is_refused() {
        assert!(cluster_nodes("redis+cluster://").is_err());
        assert!(cluster_nodes("redis+cluster://a:1/b/c").is_err());
    }
}
