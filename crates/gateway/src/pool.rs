//! Keep-alive connections to the upstreams, one set per serving thread.
//!
//! A proxied request takes an idle connection of its thread (the most recently used one
//! first) or opens a new one, and its connection goes back when the response body has been
//! read to the end, on the same thread and without a task of its own. A response dropped
//! early, a failed exchange or an upstream that closed the connection just drop it. Idle
//! connections close after `idle_timeout` (a sweep per thread checks every `idle_timeout`,
//! so an unused connection lives at most twice that) and at most `max_idle` stay per
//! upstream and thread.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, Weak},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    http::uri::Authority,
};
use hyper::{
    body::{Body as _, Frame, Incoming, SizeHint},
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

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
    sender: SendRequest<Body>,
    since: Instant,
}

/// A connection taken from the pool or newly opened, for one exchange.
pub struct Pooled {
    sender: SendRequest<Body>,
    authority: Authority,
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
    /// It may still turn out closed when used: then the request comes back unsent.
    pub fn idle(&self, authority: &Authority) -> Option<Pooled> {
        let home = self.this_thread();
        let mut idle = home.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.iter_mut().find(|(a, _)| a == authority)?;
        while let Some(Idle { sender, .. }) = list.1.pop() {
            if !sender.is_closed() {
                return Some(Pooled {
                    sender,
                    authority: authority.clone(),
                    home: Arc::downgrade(home),
                });
            }
        }
        None
    }

    /// Opens a new connection to `authority`; its I/O runs in a task of this thread.
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
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Failed(authority.clone(), io::Error::other(e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection closed with an error");
            }
        });
        Ok(Pooled {
            sender,
            authority: authority.clone(),
            home: Arc::downgrade(home),
        })
    }
}

impl Pooled {
    /// The connection's sender.
    pub fn sender(&mut self) -> &mut SendRequest<Body> {
        &mut self.sender
    }

    /// Puts the connection back among its thread's idle ones.
    fn give_back(self) {
        let Some(home) = self.home.upgrade() else {
            return;
        };
        if self.sender.is_closed() {
            return;
        }
        let mut idle = home.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let position = match idle.iter().position(|(a, _)| *a == self.authority) {
            Some(position) => position,
            None => {
                idle.push((self.authority, Vec::new()));
                idle.len() - 1
            }
        };
        let list = &mut idle[position].1;
        if list.len() < home.max_idle {
            list.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }

    /// The response body, which gives the connection back once it has been read to the end.
    pub fn body(self, body: Incoming) -> Body {
        if body.is_end_stream() {
            self.give_back();
            return Body::new(body);
        }
        Body::new(Returning {
            body,
            connection: Some(self),
        })
    }
}

/// A response body that gives its connection back at its end.
struct Returning {
    body: Incoming,
    connection: Option<Pooled>,
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !this.body.is_end_stream() => {}
            // The end, a trailer frame included.
            Some(Ok(_)) | None => {
                if let Some(connection) = this.connection.take() {
                    connection.give_back();
                }
            }
            // A broken exchange: the connection is not reused.
            Some(Err(_)) => this.connection = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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
            list.retain(|c| c.since.elapsed() < timeout && !c.sender.is_closed());
        }
    }
}
