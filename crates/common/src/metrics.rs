//! Prometheus metrics: one process-wide recorder, a middleware that counts every request and
//! times it per matched route (so `/v1/carts/{id}` is one series, not one per cart), and the
//! `/metrics` route.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets between scrapes. The recorder
/// keeps every sample until then: unscraped, a service at 50,000 requests a second would
/// grow by about a megabyte a second.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide recorder, installed on first use. Upkeep (draining histogram buffers)
/// runs on every scrape and, on a thread of its own, every `UPKEEP_EVERY`.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("latency buckets are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            })
            .expect("the metrics upkeep thread starts");
        handle
    })
}

/// The `/metrics` route.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    handle();
    Router::new().route("/metrics", get(render))
}

async fn render() -> impl IntoResponse {
    let handle = handle();
    handle.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    )
}

/// The `method` label of a request: one of the methods HTTP defines, else `OTHER`. A method
/// is any token a client likes, and every label value is a series kept for the process's
/// life: unbounded labels would let one client grow `/metrics` without end.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Middleware: `http_requests_total` and `http_request_duration_seconds` by method, matched
/// route and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method()).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let labels: std::collections::HashSet<_> = (0..3000)
            .map(|i| method_label(&Method::from_bytes(format!("M{i}").as_bytes()).unwrap()))
            .collect();
        assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["OTHER"]);
    }
}
