//! The storefront's HTTP client: one request per connection (as many shoppers are), bounded
//! in time, with every answer the platform gives recorded for the 5xx and problem+json
//! invariants.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, body::Bytes, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long a shopper waits for an answer before counting it lost.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body.
pub enum Body {
    /// No body.
    None,
    /// JSON.
    Json(Value),
    /// Bytes with a content type, sent as they are (for malformed input).
    Raw(&'static str, String),
    /// Stripe's form encoding.
    Form(Vec<(String, String)>),
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Whether its content type was `application/problem+json`.
    pub problem: bool,
    /// The body as JSON (`Null` when it was not JSON).
    pub json: Value,
}

/// One exchange with the platform, for the invariants.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the run started, when the request was sent.
    pub sent: f64,
    /// Seconds since the run started, when it was answered or given up.
    pub done: f64,
    /// What was asked, e.g. `POST /v1/orders`.
    pub what: String,
    /// The status, or `None` when no answer came.
    pub status: Option<u16>,
    /// Whether the answer was problem+json.
    pub problem: bool,
    /// Whether the request was malformed on purpose (a 4xx problem+json is expected).
    pub malformed: bool,
}

/// A client bound to the run's clock, recording every exchange with the platform.
#[derive(Clone)]
pub struct Client {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Client {
    /// A client whose clock starts at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            samples: Arc::default(),
        }
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Every exchange recorded so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples").clone()
    }

    /// Sends a request to the platform (recorded); `None` when no answer came in time.
    pub async fn send(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
        malformed: bool,
    ) -> Option<Answer> {
        let sent = self.now();
        let what = format!("{method} {}", shape(path));
        let answer = send(addr, method, path, headers, body).await;
        let sample = Sample {
            sent,
            done: self.now(),
            what,
            status: answer.as_ref().map(|a| a.status),
            problem: answer.as_ref().is_some_and(|a| a.problem),
            malformed,
        };
        self.samples.lock().expect("samples").push(sample);
        answer
    }
}

/// A path with its ids replaced by `{id}`, to group samples.
fn shape(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.split('/')
        .map(|part| {
            if ["crt_", "ord_", "pay_", "pi_"]
                .iter()
                .any(|p| part.starts_with(p))
            {
                "{id}"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends one request, unrecorded (stripe-sim's API and controls, the admin API).
pub async fn send(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Option<Answer> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, method, path, headers, body))
        .await
        .ok()?
        .ok()
}

async fn exchange(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> anyhow::Result<Answer> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let bytes = match body {
        Body::None => Bytes::new(),
        Body::Json(value) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(value.to_string())
        }
        Body::Raw(content_type, raw) => {
            request = request.header(header::CONTENT_TYPE, content_type);
            Bytes::from(raw)
        }
        Body::Form(pairs) => {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Bytes::from(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish(),
            )
        }
    };
    let response = sender.send_request(request.body(Full::new(bytes))?).await?;
    let status = response.status().as_u16();
    let header_is = |name: header::HeaderName, want: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(want))
    };
    let problem = header_is(header::CONTENT_TYPE, "application/problem+json");
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        problem,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}
