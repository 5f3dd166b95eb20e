//! Upstream HTTP/1.1 spoken by hyper (`client::conn::http1`), for `GATEWAY_HTTP=hyper`.
//!
//! Each upstream connection is hyper's: a task of its own on the serving thread drives it,
//! and a `SendRequest` handle sends on it. Handles are kept per serving thread and upstream
//! (the most recently used first) and go back when the response body has been read to its
//! end after the request body went out whole. Any other end (a response dropped early, an
//! upstream that answered mid-upload, a timeout) stops the connection's task, which drops
//! what is left of the request body: the client's body then drains in the background
//! (`crate::http1::DownstreamBody`). Idle connections close after `idle_timeout`, at most `max_idle` stay.

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Instant,
};

use axum::{
    body::{Body, Bytes},
    http::{
        HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header, request,
        uri::Authority,
    },
};
use hyper::{
    body::{Body as _, Frame, Incoming, SizeHint},
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tokio::{net::TcpStream, task::AbortHandle};

use crate::{
    forwarding,
    http1::{ConnectError, PoolSettings},
};

/// The longest response head an upstream may send (a longer one is a 502).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header lines a response may carry.
const MAX_HEADERS: usize = 128;

/// The upstream connections of every serving thread.
pub struct HyperPool {
    threads: ThreadLocal<Arc<ThreadPool>>,
    settings: PoolSettings,
}

/// One thread's idle connections, by upstream.
struct ThreadPool {
    idle: Mutex<Vec<(Authority, Vec<Idle>)>>,
    max_idle: usize,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// hyper's handle on one connection, and the task that drives it.
struct Connection {
    sender: SendRequest<Outbound>,
    task: AbortHandle,
}

/// A connection in use by one exchange. Dropped without going back, its task stops.
struct Lease {
    connection: Option<Connection>,
    list: usize,
    home: Weak<ThreadPool>,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No connection could be opened.
    #[error(transparent)]
    Connect(ConnectError),
    /// The exchange on an open connection failed.
    #[error(transparent)]
    Exchange(hyper::Error),
    /// The upstream switched protocols, which is not proxied.
    #[error("protocol upgrades are not proxied")]
    Upgrade,
    /// The response head is over `MAX_HEAD_BYTES`.
    #[error("the response head is too large")]
    HeadTooLarge,
}

impl HyperPool {
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

    /// Sends `parts` and `body` to `authority` and answers the response, its body read as
    /// it is polled. A request that an idle connection, closed under it, did not carry goes
    /// again on another; so does one without a body and with an idempotent method that such
    /// a connection lost.
    pub async fn send(
        &self,
        authority: &Authority,
        parts: request::Parts,
        body: Body,
    ) -> Result<Response<Body>, Failure> {
        let home = self.this_thread();
        let sent = (!body.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let retryable = sent.is_none() && parts.method.is_idempotent();
        let copy = retryable.then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
        let mut request = Request::from_parts(
            parts,
            Outbound {
                inner: body,
                sent: sent.clone(),
            },
        );
        let mut lease = loop {
            let Some(mut lease) = home.take(authority) else {
                break self.connect(home, authority).await?;
            };
            let sender = lease.sender();
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return finish(response, lease, sent),
                Err(mut failed) => match (failed.take_message(), &copy) {
                    // Never written: it goes again, as it is.
                    (Some(unsent), _) => request = unsent,
                    (None, Some((method, uri, headers))) if is_stale(failed.error()) => {
                        tracing::debug!(error = %failed.error(), "an idle upstream connection was closed; retrying");
                        request = Request::new(Outbound {
                            inner: Body::empty(),
                            sent: None,
                        });
                        *request.method_mut() = method.clone();
                        *request.uri_mut() = uri.clone();
                        *request.headers_mut() = headers.clone();
                    }
                    (None, _) => return Err(Failure::Exchange(failed.into_error())),
                },
            }
        };
        let sender = lease.sender();
        sender.ready().await.map_err(Failure::Exchange)?;
        match sender.send_request(request).await {
            Ok(response) => finish(response, lease, sent),
            Err(e) => Err(Failure::Exchange(e)),
        }
    }

    /// Opens a new connection to `authority`, driven by a task on this thread.
    async fn connect(
        &self,
        home: &Arc<ThreadPool>,
        authority: &Authority,
    ) -> Result<Lease, Failure> {
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let stream = tokio::time::timeout(
            self.settings.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| Failure::Connect(ConnectError::TimedOut(authority.clone())))?
        .map_err(|e| Failure::Connect(ConnectError::Failed(authority.clone(), e)))?;
        // Small requests go out at once: a proxy must not add Nagle's delay to every hop.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Exchange)?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "an upstream connection ended");
            }
        })
        .abort_handle();
        Ok(Lease {
            connection: Some(Connection { sender, task }),
            list: home.list(authority),
            home: Arc::downgrade(home),
        })
    }
}

/// Whether `error` says the connection went away before the request was answered.
fn is_stale(error: &hyper::Error) -> bool {
    error.is_incomplete_message() || error.is_canceled() || error.is_closed()
}

/// The response as the client is to get it: hop-by-hop headers gone, repeated equal lengths
/// as one, its body giving the connection back at its end.
fn finish(
    response: Response<Incoming>,
    lease: Lease,
    sent: Option<Arc<AtomicBool>>,
) -> Result<Response<Body>, Failure> {
    let (mut parts, incoming) = response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Failure::Upgrade);
    }
    // hyper's buffer limit holds only for a head that arrives in pieces; this one holds
    // however it came.
    let head: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if head > MAX_HEAD_BYTES {
        return Err(Failure::HeadTooLarge);
    }
    forwarding::strip_hop_by_hop(&mut parts.headers);
    one_length(&mut parts.headers);
    let mut body = UpstreamBody {
        inner: incoming,
        lease: Some(lease),
        sent,
    };
    if body.inner.is_end_stream() {
        body.finish();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Repeated `Content-Length` lines (hyper accepts them when they agree) reach the client as
/// one.
fn one_length(headers: &mut HeaderMap) {
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let (Some(first), Some(_)) = (lengths.next(), lengths.next()) {
        let first: HeaderValue = first.clone();
        headers.insert(header::CONTENT_LENGTH, first);
    }
}

/// Sets what a proxied request's head says about its way here: the upstream's `Host`, the
/// client's address appended to `X-Forwarded-For`, the client's `Host` as
/// `X-Forwarded-Host`, `X-Forwarded-Proto`, the gateway's `traceparent` when it has one, and
/// the body's length (or none, for chunked). Hop-by-hop headers must be gone already.
pub fn forward_headers(
    parts: &mut request::Parts,
    host: &HeaderValue,
    client: &forwarding::Client,
    traceparent: Option<HeaderValue>,
    size: &SizeHint,
) {
    let headers = &mut parts.headers;
    let client_host = headers.insert(header::HOST, host.clone());
    let forwarded_host = headers.remove(forwarding::X_FORWARDED_HOST);
    if let Some(host) = client_host.or(forwarded_host) {
        headers.insert(forwarding::X_FORWARDED_HOST, host);
    }
    let forwarded_for = match headers.get(forwarding::X_FORWARDED_FOR) {
        None => client.forwarded_for().clone(),
        Some(_) => {
            let mut line = Vec::new();
            for earlier in headers.get_all(forwarding::X_FORWARDED_FOR) {
                line.extend_from_slice(earlier.as_bytes());
                line.extend_from_slice(b", ");
            }
            line.extend_from_slice(client.forwarded_for().as_bytes());
            HeaderValue::from_maybe_shared(Bytes::from(line))
                .unwrap_or_else(|_| client.forwarded_for().clone())
        }
    };
    headers.insert(forwarding::X_FORWARDED_FOR, forwarded_for);
    headers.insert(
        forwarding::X_FORWARDED_PROTO,
        HeaderValue::from_static("http"),
    );
    if let Some(traceparent) = traceparent {
        headers.insert(forwarding::TRACEPARENT, traceparent);
    }
    let had_length = headers.remove(header::CONTENT_LENGTH).is_some();
    match size.exact() {
        Some(0)
            if had_length || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) =>
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        }
        Some(n) if n > 0 => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        // Unknown: hyper sends it chunked.
        _ => {}
    }
}

impl ThreadPool {
    /// The most recently used idle connection to `authority` that is still open.
    fn take(self: &Arc<Self>, authority: &Authority) -> Option<Lease> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle
            .iter()
            .position(|(a, _)| a.as_str() == authority.as_str())?;
        while let Some(Idle { connection, .. }) = idle[list].1.pop() {
            if !connection.sender.is_closed() {
                return Some(Lease {
                    connection: Some(connection),
                    list,
                    home: Arc::downgrade(self),
                });
            }
            connection.task.abort();
        }
        None
    }

    fn list(&self, authority: &Authority) -> usize {
        crate::http1::idle_list(&self.idle, authority)
    }
}

impl Lease {
    fn sender(&mut self) -> &mut SendRequest<Outbound> {
        &mut self
            .connection
            .as_mut()
            .expect("a lease holds its connection until it goes back")
            .sender
    }

    /// Puts the connection back among its thread's idle ones.
    fn give_back(mut self) {
        let (Some(connection), Some(home)) = (self.connection.take(), self.home.upgrade()) else {
            return;
        };
        let mut idle = home.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = &mut idle[self.list].1;
        if list.len() < home.max_idle {
            list.push(Idle {
                connection,
                since: Instant::now(),
            });
        } else {
            connection.task.abort();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.task.abort();
        }
    }
}

/// Closes one thread's connections idle longer than `timeout`, until the pool is gone.
async fn sweep(pool: Weak<ThreadPool>, timeout: std::time::Duration) {
    let mut ticks = tokio::time::interval(timeout.max(std::time::Duration::from_millis(100)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, list) in idle.iter_mut() {
            list.retain(|idle| {
                let keep = idle.since.elapsed() < timeout && !idle.connection.sender.is_closed();
                if !keep {
                    idle.connection.task.abort();
                }
                keep
            });
        }
    }
}

/// A request body on its way to an upstream, telling whether it went out whole.
struct Outbound {
    inner: Body,
    /// Set once the body has ended; `None` for a body that was empty from the start.
    sent: Option<Arc<AtomicBool>>,
}

impl hyper::body::Body for Outbound {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if (frame.is_none() || self.inner.is_end_stream())
            && let Some(sent) = &self.sent
        {
            sent.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body read from its upstream connection; at its end the connection goes back
/// to the pool if the request went out whole.
struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    sent: Option<Arc<AtomicBool>>,
}

impl UpstreamBody {
    fn finish(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if self
            .sent
            .as_ref()
            .is_none_or(|sent| sent.load(Ordering::Relaxed))
        {
            lease.give_back();
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => self.finish(),
            Some(Ok(_)) if self.inner.is_end_stream() => self.finish(),
            Some(Ok(_)) => {}
            // The connection is broken: dropping the lease stops it.
            Some(Err(_)) => self.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
