//! An OTLP/HTTP trace receiver for tests: a tiny server on a free local port that accepts
//! `POST /v1/traces` (protobuf, as the services' exporter sends it) and keeps every span,
//! with what a test needs to follow a trace across services: parents, links and the
//! exporting service's name. It runs on a thread of its own, so a test may block on an
//! exporter's flush while the receiver answers.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{Arc, Mutex},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use prost::Message as _;

/// One span as the receiver got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The exporting service (`service.name`).
    pub service: String,
    /// The span's name (`request`, `job`, …).
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's span id; `None` for a trace's root.
    pub parent_span_id: Option<String>,
    /// Attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// The spans it links to: (trace id, span id).
    pub links: Vec<(String, String)>,
    /// What was logged in it (its events), each with its fields.
    pub events: Vec<String>,
}

impl ReceivedSpan {
    /// The attribute `key`, or "" when it has none.
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// The receiver. Dropping it leaves the server running until the process ends.
#[derive(Clone)]
pub struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Collector {
    /// Starts a receiver on `127.0.0.1:0`; answers once it listens.
    pub fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free local port");
        listener
            .set_nonblocking(true)
            .expect("a nonblocking socket");
        let url = format!("http://{}", listener.local_addr().expect("a local address"));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    axum::serve(listener, app).await
                })
        });
        Self { url, spans }
    }

    /// Its base URL, what `OTEL_EXPORTER_OTLP_ENDPOINT` takes.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("the span list").clone()
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<ReceivedSpan>>>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            received.push(ReceivedSpan {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: (!span.parent_span_id.is_empty())
                    .then(|| hex(&span.parent_span_id)),
                attributes: span.attributes.iter().map(attribute).collect(),
                links: span
                    .links
                    .iter()
                    .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                    .collect(),
                events: span
                    .events
                    .iter()
                    .map(|e| {
                        let fields: Vec<String> = e
                            .attributes
                            .iter()
                            .map(|kv| format!("{}={}", kv.key, text(kv.value.as_ref())))
                            .collect();
                        format!("{} {}", e.name, fields.join(" "))
                    })
                    .collect(),
            });
        }
    }
    spans.lock().expect("the span list").extend(received);
    StatusCode::OK
}

fn attribute(kv: &KeyValue) -> (String, String) {
    (kv.key.clone(), text(kv.value.as_ref()))
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The traces reachable from trace `root` in `spans`: a span's trace and the traces it links
/// to (or that link to it) are connected. A hop that started a fresh, unlinked trace is not
/// reachable.
pub fn reachable(spans: &[ReceivedSpan], root: &str) -> HashSet<String> {
    let mut seen = HashSet::from([root.to_owned()]);
    let mut todo = vec![root.to_owned()];
    while let Some(trace) = todo.pop() {
        for span in spans {
            let mut neighbours = BTreeSet::new();
            if span.trace_id == trace {
                neighbours.extend(span.links.iter().map(|(t, _)| t.clone()));
            }
            if span.links.iter().any(|(t, _)| *t == trace) {
                neighbours.insert(span.trace_id.clone());
            }
            for next in neighbours {
                if seen.insert(next.clone()) {
                    todo.push(next);
                }
            }
        }
    }
    seen
}

/// `spans` as an indented tree per trace (children under their parent, links after `~>`),
/// for a test's output.
pub fn render(spans: &[ReceivedSpan]) -> String {
    let mut out = String::new();
    let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    for trace in traces {
        out.push_str(&format!("trace {trace}\n"));
        let in_trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
        let ids: HashSet<&str> = in_trace.iter().map(|s| s.span_id.as_str()).collect();
        // Roots: no parent, or a parent not received (another process's unexported span).
        for root in in_trace
            .iter()
            .filter(|s| s.parent_span_id.as_deref().is_none_or(|p| !ids.contains(p)))
        {
            render_span(&mut out, &in_trace, root, 1);
        }
    }
    out
}

fn render_span(out: &mut String, spans: &[&ReceivedSpan], span: &ReceivedSpan, depth: usize) {
    let detail = [
        "method", "path", "kind", "status", "order", "payment", "event", "event_id", "cart_id",
    ]
    .iter()
    .filter(|k| span.attributes.contains_key(**k))
    .map(|k| format!("{k}={}", span.attribute(k)))
    .collect::<Vec<_>>()
    .join(" ");
    let parent = span.parent_span_id.as_deref().unwrap_or("-");
    out.push_str(&format!(
        "{:indent$}{} {} [{}] span {} parent {}",
        "",
        span.service,
        span.name,
        detail,
        span.span_id,
        parent,
        indent = depth * 2
    ));
    for (trace, linked) in &span.links {
        out.push_str(&format!(" ~> {trace}/{linked}"));
    }
    out.push('\n');
    for event in &span.events {
        out.push_str(&format!(
            "{:indent$}! {event}\n",
            "",
            indent = depth * 2 + 2
        ));
    }
    for child in spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref() == Some(span.span_id.as_str()))
    {
        render_span(out, spans, child, depth + 1);
    }
}

/// A multi-thread runtime whose threads all report to `dispatch` (a service's own
/// subscriber, from `common::telemetry::dispatch`): what runs on it is traced as that
/// service, while other runtimes in the process report as theirs.
pub fn runtime_for(dispatch: tracing::Dispatch) -> tokio::runtime::Runtime {
    thread_local! {
        static DEFAULT: std::cell::RefCell<Option<tracing::dispatcher::DefaultGuard>> =
            const { std::cell::RefCell::new(None) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            let guard = tracing::dispatcher::set_default(&dispatch);
            DEFAULT.with(|d| *d.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| DEFAULT.with(|d| drop(d.borrow_mut().take())))
        .build()
        .expect("a runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, id: &str, links: &[(&str, &str)]) -> ReceivedSpan {
        ReceivedSpan {
            service: "s".into(),
            name: "n".into(),
            trace_id: trace.into(),
            span_id: id.into(),
            parent_span_id: None,
            attributes: BTreeMap::new(),
            links: links
                .iter()
                .map(|(t, s)| ((*t).to_owned(), (*s).to_owned()))
                .collect(),
            events: Vec::new(),
        }
    }

    #[test]
    fn links_connect_traces_both_ways_and_a_fresh_trace_stays_apart() {
        let spans = [
            span("a", "1", &[]),
            span("b", "2", &[("a", "1")]),
            span("c", "3", &[]),
            span("c", "4", &[("b", "2")]),
            span("d", "5", &[]),
        ];
        let from_a = reachable(&spans, "a");
        assert!(["a", "b", "c"].iter().all(|t| from_a.contains(*t)));
        assert!(!from_a.contains("d"));
    }
}
