//! In-process stand-ins for the upstreams: a fake legacy monolith and fake new services,
//! each an axum app on `127.0.0.1:0` that says which side it is. A request header
//! (`x-fake`) picks a behaviour (echo, hold, slow, upload, download, stream) and the test can
//! make every n-th answer fail with a status of its choosing.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    serve::ListenerExt as _,
};
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What a fake answers and counts.
pub struct FakeState {
    side: &'static str,
    served: AtomicU64,
    fail_every: AtomicU64,
    fail_status: AtomicU16,
    held: AtomicU64,
    connections: AtomicU64,
    release: watch::Sender<bool>,
}

/// A running fake upstream.
pub struct Fake {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<FakeState>,
    shutdown: CancellationToken,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.release();
    }
}

impl Fake {
    /// Starts a fake that answers as `side`.
    pub async fn start(side: &'static str) -> Self {
        let state = Arc::new(FakeState {
            side,
            served: AtomicU64::new(0),
            fail_every: AtomicU64::new(0),
            fail_status: AtomicU16::new(500),
            held: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            release: watch::channel(false).0,
        });
        let app = Router::new().fallback(answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counted = state.clone();
        let listener = listener.tap_io(move |_| {
            counted.connections.fetch_add(1, Ordering::SeqCst);
        });
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Self {
            url,
            state,
            shutdown,
        }
    }

    /// Makes every `every`-th request from now on answer `status` (0 turns it off).
    pub fn fail_every(&self, every: u64, status: u16) {
        self.state.fail_status.store(status, Ordering::SeqCst);
        self.state.served.store(0, Ordering::SeqCst);
        self.state.fail_every.store(every, Ordering::SeqCst);
    }

    /// Requests answered (or being answered) since the last `fail_every`.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests waiting in `x-fake: hold`.
    pub fn held(&self) -> u64 {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Lets every held request answer.
    pub fn release(&self) {
        self.state.release.send_replace(true);
    }
}

async fn answer(State(fake): State<Arc<FakeState>>, request: Request) -> Response {
    let n = fake.served.fetch_add(1, Ordering::SeqCst) + 1;
    let every = fake.fail_every.load(Ordering::SeqCst);
    if every > 0 && n.is_multiple_of(every) {
        let status = StatusCode::from_u16(fake.fail_status.load(Ordering::SeqCst)).unwrap();
        return (status, Json(json!({"side": fake.side, "injected": true}))).into_response();
    }
    let behaviour = request
        .headers()
        .get("x-fake")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("echo")
        .to_owned();
    match behaviour.split_once(':').unwrap_or((&behaviour, "")) {
        ("hold", _) => {
            fake.held.fetch_add(1, Ordering::SeqCst);
            let mut release = fake.release.subscribe();
            let _ = release.wait_for(|released| *released).await;
            Json(json!({"side": fake.side, "held": true})).into_response()
        }
        ("slow", _) => std::future::pending().await,
        ("upload", _) => upload(fake.side, request).await,
        ("download", bytes) => download(bytes.parse().unwrap()),
        ("stream", _) => stream(),
        _ => echo(fake.side, request).await,
    }
}

async fn echo(side: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    Json(json!({
        "side": side,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers_json(&parts.headers),
        "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}

async fn upload(side: &str, request: Request) -> Response {
    let mut stream = request.into_body().into_data_stream();
    let (mut bytes, mut checksum) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        bytes += chunk.len() as u64;
        checksum = chunk.iter().fold(checksum, |sum, &b| {
            sum.wrapping_mul(31).wrapping_add(u64::from(b))
        });
    }
    Json(json!({"side": side, "bytes": bytes, "checksum": checksum})).into_response()
}

/// `n` bytes: chunk `i` (64 KiB) is filled with the byte `i % 251`.
fn download(n: usize) -> Response {
    let chunks = pattern(n).map(Ok::<_, Infallible>);
    Body::from_stream(futures_util::stream::iter(chunks)).into_response()
}

/// An event stream that sends one event and then nothing, for ever.
fn stream() -> Response {
    let first = futures_util::stream::once(async {
        Ok::<_, Infallible>(Bytes::from_static(b"data: hello\n\n"))
    });
    let body = Body::from_stream(first.chain(futures_util::stream::pending()));
    ([("content-type", "text/event-stream")], body).into_response()
}

/// The chunks of the download (and upload) pattern.
pub fn pattern(n: usize) -> impl Iterator<Item = Bytes> {
    const CHUNK: usize = 64 * 1024;
    (0..n.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(n - i * CHUNK);
        Bytes::from(vec![(i % 251) as u8; len])
    })
}

/// The checksum `upload` computes, over the whole pattern.
pub fn checksum(n: usize) -> u64 {
    pattern(n).fold(0u64, |sum, chunk| {
        chunk
            .iter()
            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
    })
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        map.insert(name.as_str().to_owned(), Value::from(values.join(", ")));
    }
    Value::Object(map)
}
