//! Logging and tracing. Pretty logs for development, JSON with `LOG_FORMAT=json`; spans go to
//! an OTLP collector only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, under `OTEL_SERVICE_NAME`
//! (the service's own name when unset). Incoming requests join the caller's trace through the
//! W3C `traceparent` header; probes (`/healthz`, `/readyz`, `/metrics`) make no spans, or
//! every scrape would be a trace. Work that cannot be a child of its cause (a batch made of
//! many requests, a job caused by one trace about a payment of another) carries span links.
//! Pretty logs are coloured only on a terminal and never under `NO_COLOR`, so a file,
//! `docker logs` or CI gets plain text.

use std::io::IsTerminal as _;

use axum::http::{HeaderMap, Request};
use opentelemetry::{
    propagation::Extractor,
    trace::{SpanContext, TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider},
};
use tracing::{Dispatch, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// Keeps the trace exporter alive; flushes pending spans when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl TelemetryGuard {
    /// Exports the spans ended so far now, instead of at the next batch. Blocks the calling
    /// thread until the exporter answers.
    pub fn flush(&self) {
        if let Some(provider) = &self.0
            && let Err(e) = provider.force_flush()
        {
            eprintln!("trace exporter did not flush: {e}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace exporter did not shut down cleanly: {e}");
        }
    }
}

/// The name spans are exported under: `OTEL_SERVICE_NAME` when set, else `default`.
pub fn service_name(default: &str) -> String {
    service_name_from(crate::config::var("OTEL_SERVICE_NAME"), default)
}

fn service_name_from(configured: Option<String>, default: &str) -> String {
    configured
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Installs the global subscriber for `service`. Calling it again (as tests do) is harmless.
pub fn init(service: &'static str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(colour(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .boxed()
    };

    let provider = crate::config::var("OTEL_EXPORTER_OTLP_ENDPOINT").and_then(|_| {
        match otlp_provider(&service_name(service), None, None) {
            Ok(provider) => Some(provider),
            Err(e) => {
                eprintln!(
                    "OTEL_EXPORTER_OTLP_ENDPOINT is set but the exporter could not start: {e}"
                );
                None
            }
        }
    });
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service_name(service)))
            .boxed()
    });

    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    TelemetryGuard(provider)
}

/// Whether pretty logs carry ANSI colours: only on a terminal, and not when `NO_COLOR` is set
/// to anything non-empty (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// A provider exporting spans of `service` over OTLP/HTTP: to `endpoint` when given (the
/// full URL, `…/v1/traces`), else where the standard OTEL_* variables say; in batches sent
/// every `every` when given, else the SDK's (or `OTEL_BSP_*`'s) schedule.
fn otlp_provider(
    service: &str,
    endpoint: Option<&str>,
    every: Option<std::time::Duration>,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let mut batch = BatchConfigBuilder::default();
    if let Some(every) = every {
        batch = batch.with_scheduled_delay(every);
    }
    let processor = BatchSpanProcessor::builder(exporter.build()?)
        .with_batch_config(batch.build())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

/// A subscriber of its own for one service instance, exporting its spans as `service` to the
/// OTLP/HTTP collector at `endpoint` (its base URL) every `every`, with no log output; for
/// running several services in one process, each on threads that use its dispatcher, where
/// the global subscriber of [`init`] would name them all alike.
pub fn dispatch(
    service: &str,
    endpoint: &str,
    every: std::time::Duration,
) -> Result<(Dispatch, TelemetryGuard), opentelemetry_otlp::ExporterBuildError> {
    // The exporter's HTTP client needs the process's TLS provider, even for plain HTTP.
    crate::service::install_crypto();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let endpoint = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let provider = otlp_provider(service, Some(&endpoint), Some(every))?;
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned())));
    Ok((Dispatch::new(subscriber), TelemetryGuard(Some(provider))))
}

/// Paths that are probed or scraped all day: no span, no trace.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The span of one incoming request, parented to the caller's trace when the request
/// carries a `traceparent` header; none for a probe.
pub fn request_span<B>(request: &Request<B>) -> Span {
    if is_probe(request.uri().path()) {
        return Span::none();
    }
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
    );
    // A disabled span (tracing off at this level) has no parent to set.
    if !span.is_disabled() && request.headers().contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
    }
    span
}

/// The current span's W3C `traceparent`, to carry the trace into a queued job or an
/// outgoing request; `None` when tracing is not exported.
pub fn current_traceparent() -> Option<String> {
    let context = Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove("traceparent")
}

/// Parents `span` to the trace a `traceparent` value names.
pub fn follow_traceparent(span: &Span, traceparent: &str) {
    let _ = span.set_parent(extract(traceparent));
}

/// Links `span` to the span a `traceparent` value names: it is caused by that span (or takes
/// part in its work) without being its child. Best called on a span just made, before it
/// is entered, so the link is part of the span from its start. A malformed value adds
/// nothing.
pub fn link_traceparent(span: &Span, traceparent: &str) {
    if let Some(linked) = span_context(traceparent) {
        span.add_link(linked);
    }
}

/// The 32 hex digits of the trace a `traceparent` value names; `None` when it is malformed.
pub fn trace_id(traceparent: &str) -> Option<String> {
    span_context(traceparent).map(|c| c.trace_id().to_string())
}

fn extract(traceparent: &str) -> opentelemetry::Context {
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier))
}

fn span_context(traceparent: &str) -> Option<SpanContext> {
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    // The W3C propagator directly: parsing must not depend on which global one is set.
    let context = opentelemetry::propagation::TextMapPropagator::extract(
        &TraceContextPropagator::new(),
        &carrier,
    );
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(false, None));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, Some(OsStr::new("1"))));
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn otel_service_name_wins_over_the_name_in_code() {
        assert_eq!(
            service_name_from(Some("orders-eu".into()), "orders"),
            "orders-eu"
        );
        assert_eq!(service_name_from(Some("  ".into()), "orders"), "orders");
        assert_eq!(service_name_from(None, "orders"), "orders");
    }

    #[test]
    fn probes_get_no_span() {
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert!(is_probe(path), "{path}");
        }
        for path in ["/v1/orders", "/healthz/x", "/metrics/"] {
            assert!(!is_probe(path), "{path}");
        }
    }

    #[test]
    fn a_traceparent_names_its_trace() {
        assert_eq!(
            trace_id(PARENT).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("00-zz-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id(""), None);
    }
}
