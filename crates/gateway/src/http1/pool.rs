//! Keep-alive connections to the upstreams, one set per serving thread.
//!
//! A proxied request takes an idle connection of its thread (the most recently used one
//! first) or opens a new one, and its connection goes back when the response body has been
//! read to the end, on the same thread (`super::upstream` speaks HTTP on it, no task of its
//! own). A response dropped early, a failed exchange or an upstream that closed the
//! connection just drop it. Idle connections close after `idle_timeout` (a sweep per thread
//! checks every `idle_timeout`, so an unused connection lives at most twice that) and at
//! most `max_idle` stay per upstream and thread.

use std::{
    io,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::{Duration, Instant},
};

use axum::http::uri::Authority;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

use super::upstream::UpstreamConnection;

/// How the pool keeps connections.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Bound on opening a connection.
    pub connect_timeout: Duration,
    /// Idle connections close after this.
    pub idle_timeout: Duration,
    /// Idle connections kept per upstream and thread.
    pub max_idle: usize,
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Connecting took longer than the connect timeout.
    #[error("connecting to {0} timed out")]
    TimedOut(Authority),
    /// The upstream refused, or its name did not resolve.
    #[error("connecting to {0} failed")]
    Failed(Authority, #[source] io::Error),
}

/// The pools of every serving thread.
pub struct Pool {
    threads: ThreadLocal<Arc<ThreadPool>>,
    settings: PoolSettings,
}

/// One thread's idle connections, by upstream.
struct ThreadPool {
    idle: Mutex<Vec<(Authority, Vec<Idle>)>>,
    max_idle: usize,
}

struct Idle {
    connection: UpstreamConnection,
    since: Instant,
}

/// A connection taken from the pool or newly opened, for one exchange.
pub struct Pooled {
    connection: UpstreamConnection,
    /// Where its upstream's idle list is in `home` (no copy of the authority per request:
    /// its bytes are shared by every serving thread).
    list: usize,
    home: Weak<ThreadPool>,
}

impl Pool {
    /// An empty pool.
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            threads: ThreadLocal::new(),
            settings,
        }
    }

    fn this_thread(&self) -> &Arc<ThreadPool> {
        self.threads.get_or(|| {
            let pool = Arc::new(ThreadPool {
                idle: Mutex::default(),
                max_idle: self.settings.max_idle,
            });
            tokio::spawn(sweep(Arc::downgrade(&pool), self.settings.idle_timeout));
            pool
        })
    }

    /// An idle connection to `authority` that has not been closed, if this thread has one.
    /// The upstream may still close it as the request goes out.
    pub fn idle(&self, authority: &Authority) -> Option<Pooled> {
        let home = self.this_thread();
        let mut idle = home.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle
            .iter()
            .position(|(a, _)| a.as_str() == authority.as_str())?;
        while let Some(Idle { connection, .. }) = idle[list].1.pop() {
            if connection.is_usable() {
                return Some(Pooled {
                    connection,
                    list,
                    home: Arc::downgrade(home),
                });
            }
        }
        None
    }

    /// Opens a new connection to `authority`, on this thread.
    pub async fn connect(&self, authority: &Authority) -> Result<Pooled, ConnectError> {
        let home = self.this_thread();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        // An address is used as is; only a name is looked up.
        let stream = tokio::time::timeout(
            self.settings.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| ConnectError::TimedOut(authority.clone()))?
        .map_err(|e| ConnectError::Failed(authority.clone(), e))?;
        // Small requests go out at once: a proxy must not add Nagle's delay to every hop.
        let _ = stream.set_nodelay(true);
        Ok(Pooled {
            connection: UpstreamConnection::new(stream),
            list: home.list(authority),
            home: Arc::downgrade(home),
        })
    }
}

impl ThreadPool {
    fn list(&self, authority: &Authority) -> usize {
        idle_list(&self.idle, authority)
    }
}

/// The place of `authority`'s list in a pool's idle lists, made on first use. Lists are never
/// removed, so a place stays valid for the pool's life. Both HTTP paths' pools keep their idle
/// connections this way.
pub(crate) fn idle_list<T>(idle: &Mutex<Vec<(Authority, Vec<T>)>>, authority: &Authority) -> usize {
    let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
    match idle
        .iter()
        .position(|(a, _)| a.as_str() == authority.as_str())
    {
        Some(list) => list,
        None => {
            idle.push((authority.clone(), Vec::new()));
            idle.len() - 1
        }
    }
}

impl Pooled {
    /// The connection.
    pub fn connection(&mut self) -> &mut UpstreamConnection {
        &mut self.connection
    }

    /// Puts the connection back among its thread's idle ones, unless it cannot be reused.
    pub fn give_back(self) {
        let Some(home) = self.home.upgrade() else {
            return;
        };
        if !self.connection.is_reusable() {
            return;
        }
        let mut idle = home.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = &mut idle[self.list].1;
        if list.len() < home.max_idle {
            list.push(Idle {
                connection: self.connection,
                since: Instant::now(),
            });
        }
    }
}

/// Closes one thread's connections idle longer than `timeout`, until the pool is gone.
async fn sweep(pool: Weak<ThreadPool>, timeout: Duration) {
    let mut ticks = tokio::time::interval(timeout.max(Duration::from_millis(100)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, list) in idle.iter_mut() {
            list.retain(|c| c.since.elapsed() < timeout && c.connection.is_usable());
        }
    }
}
