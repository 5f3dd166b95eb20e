//! One checkout is one trace. Each service runs on a runtime whose threads report to a
//! subscriber of its own, exporting as that service to the in-process OTLP receiver, as
//! separate processes with `OTEL_EXPORTER_OTLP_ENDPOINT` would (the gateway, which runs
//! threads of its own, reports through the process's global subscriber). A 3-D Secure
//! checkout through the gateway makes every hop run: the gateway, orders' API and worker,
//! cart, payments' API, the webhook and payments' worker, the callback to orders and the
//! cart's clearing. Every span of every hop must be
//! reachable from the checkout's trace through parents and span links: a hop that starts a
//! fresh, unlinked trace fails the test.

use std::time::Duration;

use ::tracing::dispatcher as tracing_dispatch;

use serde_json::{Value, json};
use testkit::otlp::{self, Collector, ReceivedSpan};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const INTERNAL_TO_ORDERS: &str = "test-internal-to-orders";
const INTERNAL_TO_PAYMENTS: &str = "test-internal-to-payments";
const ADMIN: &str = "test-admin";
const WEBHOOK_SECRET: &str = "whsec_test_trace";

/// One service: its runtime and what flushes its spans.
struct Service {
    runtime: Runtime,
    telemetry: common::telemetry::TelemetryGuard,
}

impl Service {
    fn start(name: &str, collector: &Collector) -> Self {
        Self::with(name, collector, false)
    }

    /// A service that also reports from threads it starts itself (the gateway's serving
    /// threads): its subscriber is the process's global one.
    fn global(name: &str, collector: &Collector) -> Self {
        Self::with(name, collector, true)
    }

    fn with(name: &str, collector: &Collector, global: bool) -> Self {
        let (dispatch, telemetry) =
            common::telemetry::dispatch(name, collector.url(), Duration::from_millis(100))
                .expect("an OTLP exporter");
        if global {
            tracing_dispatch::set_global_default(dispatch.clone())
                .expect("the only global subscriber of this test binary");
        }
        Self {
            runtime: otlp::runtime_for(dispatch),
            telemetry,
        }
    }
}

fn local_listener() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

fn serve(listener: std::net::TcpListener, app: axum::Router, shutdown: CancellationToken) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(common::http::serve(listener, app, shutdown));
}

/// The URLs of a running checkout.
struct Urls {
    database: String,
    gateway: String,
    orders: String,
    cart: String,
    payments: String,
    sim: String,
}

/// Starts stripe-sim (not traced), cart, payments (API and worker), orders (API and
/// worker) and the gateway in front of them, on one fresh database.
fn start_all(
    gateway: &Service,
    cart: &Service,
    payments: &Service,
    orders: &Service,
    sim: &Runtime,
    shutdown: &CancellationToken,
) -> Urls {
    common::service::install_crypto();
    let database = testkit::database("checkout_test_trace");
    let (cart_listener, cart_url) = local_listener();
    let (payments_listener, payments_url) = local_listener();
    let (orders_listener, orders_url) = local_listener();

    let sim_config = stripe_sim::Config {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        webhook_urls: vec![format!("{payments_url}/v1/webhooks/stripe")],
        webhook_secret: WEBHOOK_SECRET.to_owned(),
        webhook_max_attempts: 8,
        webhook_retry_base: Duration::from_millis(20),
        webhook_retry_max: Duration::from_millis(200),
        webhook_timeout: Duration::from_secs(5),
        webhook_concurrency: 1,
        webhook_events: None,
        api_key: None,
    };
    let (sim_listener, sim_url) = local_listener();
    let stop = shutdown.clone();
    sim.block_on(async move {
        let (router, _sim) = stripe_sim::build(sim_config).await;
        let listener = tokio::net::TcpListener::from_std(sim_listener).unwrap();
        tokio::spawn(stripe_sim::serve(listener, router, async move {
            stop.cancelled().await;
        }));
    });

    let mut c = cart::Settings::from_env_with(common::config::Profile::Development).unwrap();
    c.db.url = database.clone();
    c.db.migrate_on_start = false;
    c.db.max_connections = 4;
    c.redis_url = testkit::redis_url();
    c.key_prefix = format!("test:{}:", common::id::new_id("t"));
    let stop = shutdown.clone();
    cart.runtime.block_on(async move {
        let app = cart::build(&c).await.unwrap();
        serve(cart_listener, app, stop);
    });

    let mut p = payments::Settings::from_env_with(common::config::Profile::Development).unwrap();
    p.db.url = database.clone();
    p.db.migrate_on_start = false;
    p.db.max_connections = 8;
    p.stripe_api_base = sim_url.clone();
    p.stripe_webhook_secrets = vec![common::Secret::new(WEBHOOK_SECRET)];
    p.orders_url = orders_url.clone();
    p.payments_internal_token = common::Secret::new(INTERNAL_TO_PAYMENTS);
    p.orders_internal_token = common::Secret::new(INTERNAL_TO_ORDERS);
    p.admin_token = common::Secret::new(ADMIN);
    p.worker.backoff = common::queue::Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    p.worker.poll_interval = Duration::from_millis(50);
    p.reconcile_interval = Duration::from_secs(3600);
    p.reconcile_after = Duration::from_secs(3600);
    let stop = shutdown.clone();
    payments.runtime.block_on(async move {
        let core = payments::connect(&p).await.unwrap();
        serve(payments_listener, payments::app(&core, &p), stop.clone());
        tokio::spawn(async move { payments::work(&core, &p, stop).await });
    });

    let mut o = orders::Settings::from_env_with(common::config::Profile::Development).unwrap();
    o.db.url = database.clone();
    o.db.migrate_on_start = false;
    o.db.max_connections = 8;
    o.redis_url = testkit::redis_url();
    o.cart_url = cart_url.clone();
    o.payments_url = payments_url.clone();
    o.orders_internal_token = common::Secret::new(INTERNAL_TO_ORDERS);
    o.payments_internal_token = common::Secret::new(INTERNAL_TO_PAYMENTS);
    o.admin_token = common::Secret::new(ADMIN);
    o.worker.backoff = common::queue::Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    o.worker.poll_interval = Duration::from_millis(50);
    o.sweep_interval = Duration::from_secs(3600);
    o.max_awaiting_per_customer = 0;
    let stop = shutdown.clone();
    orders.runtime.block_on(async move {
        let core = std::sync::Arc::new(orders::connect(&o).await.unwrap());
        serve(
            orders_listener,
            orders::app(&core, &o, stop.clone()),
            stop.clone(),
        );
        tokio::spawn(async move { orders::work(&core, &o, stop).await });
    });

    let mut g = gateway::Settings::from_env().unwrap();
    g.db.url = database.clone();
    g.redis_url = testkit::redis_url();
    g.flags_channel = format!("test:{}:flags", common::id::new_id("t"));
    let upstream = |name, url: &str| gateway::proxy::Upstream::parse(name, url).unwrap();
    g.cart_url = upstream("CART_URL", &cart_url);
    g.orders_url = upstream("ORDERS_URL", &orders_url);
    g.payments_url = upstream("PAYMENTS_URL", &payments_url);
    g.legacy_url = None;
    g.initial_rollout = Some(100);
    g.rate_limit_per_second = 0;
    g.otel_enabled = true;
    let (gateway_listener, gateway_url) = local_listener();
    let (admin_listener, _) = local_listener();
    let stop = shutdown.clone();
    gateway.runtime.block_on(async move {
        let clock = std::sync::Arc::new(gateway::clock::MonotonicClock::new());
        let app = gateway::build(&g, clock, stop.clone()).await.unwrap();
        let listener = tokio::net::TcpListener::from_std(gateway_listener).unwrap();
        let admin = tokio::net::TcpListener::from_std(admin_listener).unwrap();
        tokio::spawn(gateway::serve_admin(admin, app.clone(), stop.clone()));
        tokio::spawn(gateway::serve(listener, app, stop));
    });

    Urls {
        database,
        gateway: gateway_url,
        orders: orders_url,
        cart: cart_url,
        payments: payments_url,
        sim: sim_url,
    }
}

async fn json(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "{}", response.url());
    response.json().await.unwrap()
}

/// Runs one 3-D Secure checkout to `confirmed`, after probing every service; answers the
/// order and the cart.
async fn checkout(urls: &Urls) -> (String, String) {
    let http = reqwest::Client::new();
    for base in [&urls.orders, &urls.cart, &urls.payments] {
        for probe in ["/healthz", "/readyz", "/metrics"] {
            let answer = http.get(format!("{base}{probe}")).send().await.unwrap();
            assert!(answer.status().is_success(), "{base}{probe}");
        }
    }
    let sku = format!("SKU-{}", &common::id::new_id("p")[2..14]).to_uppercase();
    let put = http
        .put(format!("{}/admin/inventory/{sku}", urls.orders))
        .bearer_auth(ADMIN)
        .json(&json!({"on_hand": 10}));
    // The product goes into the catalog first: inventory is kept for catalog products.
    let pool = sqlx::PgPool::connect(&urls.database).await.unwrap();
    sqlx::query(
        "INSERT INTO catalog.products (sku, name, unit_price, currency) VALUES ($1, $1, 1500, 'USD')",
    )
    .bind(&sku)
    .execute(&pool)
    .await
    .unwrap();
    json(put.send().await.unwrap(), 200).await;
    let cart = json(
        http.post(format!("{}/v1/carts", urls.cart))
            .json(&json!({"currency": "USD"}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    json(
        http.post(format!("{}/v1/carts/{cart}/items", urls.cart))
            .json(&json!({"sku": sku, "quantity": 2}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;

    let order = json(
        http.post(format!("{}/v1/orders", urls.gateway))
            .header("idempotency-key", common::id::new_id("key"))
            .json(&json!({"cart_id": cart, "email": "shopper@example.com", "payment_method": "pm_card_threeDSecure2Required"}))
            .send()
            .await
            .unwrap(),
        202,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = || async {
        json(
            http.get(format!("{}/v1/orders/{order}", urls.orders))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await
    };
    let awaiting = testkit::until_status("the order", "awaiting_payment", read).await;
    let payment = awaiting["payment"]["id"].as_str().unwrap().to_owned();
    let intent = json(
        http.get(format!("{}/internal/v1/payments/{payment}", urls.payments))
            .bearer_auth(INTERNAL_TO_PAYMENTS)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await["provider_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The shopper passes 3-D Secure: Stripe's webhook, then payments' callback, finish it.
    let authenticated = http
        .post(format!(
            "{}/_sim/payment_intents/{intent}/authenticate",
            urls.sim
        ))
        .json(&json!({"outcome": "succeed"}))
        .send()
        .await
        .unwrap();
    assert!(authenticated.status().is_success());
    testkit::until_status("the order", "confirmed", read).await;
    (order, cart)
}

/// Picks a hop's spans, given every span received.
type Matcher = Box<dyn Fn(&ReceivedSpan, &[ReceivedSpan]) -> bool>;

/// A hop of the checkout: which service's spans of which name, and which of them.
struct Hop {
    what: &'static str,
    service: &'static str,
    name: &'static str,
    matches: Matcher,
}

fn request(what: &'static str, service: &'static str, method: &'static str, path: String) -> Hop {
    Hop {
        what,
        service,
        name: "request",
        matches: Box::new(move |s, _| {
            s.attribute("method") == method && s.attribute("path") == path
        }),
    }
}

fn job(what: &'static str, service: &'static str, kind: &'static str) -> Hop {
    Hop {
        what,
        service,
        name: "job",
        matches: Box::new(move |s, _| s.attribute("kind") == kind),
    }
}

/// Whether `job` is the child of `span` or links to it.
fn follows(job: &ReceivedSpan, span: &ReceivedSpan) -> bool {
    job.parent_span_id.as_deref() == Some(span.span_id.as_str())
        || job.links.iter().any(|(_, id)| *id == span.span_id)
}

/// Stripe's webhooks that brought work: a `process_events` job follows each. (Stripe sends
/// event types payments does not handle, such as `payment_intent.created`; those requests do
/// nothing and belong to no checkout.)
fn webhook() -> Hop {
    Hop {
        what: "Stripe's webhook",
        service: "payments",
        name: "request",
        matches: Box::new(|s, all| {
            s.attribute("path") == "/v1/webhooks/stripe"
                && all
                    .iter()
                    .any(|j| j.attribute("kind") == "process_events" && follows(j, s))
        }),
    }
}

fn hops(order: &str, cart: &str) -> Vec<Hop> {
    vec![
        request("checkout", "gateway", "POST", "/v1/orders".into()),
        request("placing the order", "orders", "POST", "/v1/orders".into()),
        job("the order's processing", "orders", "process_order"),
        request(
            "reading the cart",
            "cart",
            "GET",
            format!("/v1/carts/{cart}"),
        ),
        request(
            "creating the payment",
            "payments",
            "POST",
            "/internal/v1/payments".into(),
        ),
        webhook(),
        job(
            "processing the webhook's events",
            "payments",
            "process_events",
        ),
        job("the callback's job", "payments", "notify_orders"),
        request(
            "the callback",
            "orders",
            "POST",
            format!("/internal/v1/orders/{order}/payment-events"),
        ),
        job("clearing the cart", "orders", "clear_cart"),
        request(
            "deleting the cart",
            "cart",
            "DELETE",
            format!("/v1/carts/{cart}"),
        ),
    ]
}

fn of<'a>(hop: &Hop, spans: &'a [ReceivedSpan]) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.service == hop.service && s.name == hop.name && (hop.matches)(s, spans))
        .collect()
}

#[test]
fn a_three_d_secure_checkout_is_one_trace_across_every_service() {
    common::service::install_crypto();
    let collector = Collector::start();
    // Threads with no subscriber of their own (the test's, the simulator's) report nothing.
    let _quiet = tracing_dispatch::set_default(&tracing_dispatch::Dispatch::none());
    let gateway = Service::global("gateway", &collector);
    let cart = Service::start("cart", &collector);
    let payments = Service::start("payments", &collector);
    let orders = Service::start("orders", &collector);
    let sim = otlp::runtime_for(tracing_dispatch::Dispatch::none());
    let driver = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let urls = start_all(&gateway, &cart, &payments, &orders, &sim, &shutdown);

    let (order, cart_id) = driver.block_on(checkout(&urls));
    let hops = hops(&order, &cart_id);
    // The last hops' spans end last: once they are in, every hop has run.
    let last = [
        job("", "payments", "notify_orders"),
        job("", "orders", "clear_cart"),
    ];
    driver.block_on(testkit::eventually(
        "the last hops' spans are exported",
        || {
            let spans = collector.spans();
            let done = last.iter().all(|hop| !of(hop, &spans).is_empty());
            async move { done }
        },
    ));
    shutdown.cancel();
    for service in [&gateway, &cart, &payments, &orders] {
        service.telemetry.flush();
    }
    let spans = collector.spans();

    let root = of(&hops[0], &spans);
    assert_eq!(root.len(), 1, "one checkout request");
    let checkout_trace = root[0].trace_id.clone();
    assert_eq!(
        root[0].parent_span_id, None,
        "the checkout starts its trace"
    );
    let connected = otlp::reachable(&spans, &checkout_trace);
    let tree: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| connected.contains(&s.trace_id))
        .cloned()
        .collect();
    let tree = otlp::render(&tree);
    let apart: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| !connected.contains(&s.trace_id))
        .cloned()
        .collect();
    // Not the checkout's: the test's own set-up calls, and webhooks that brought no work.
    eprintln!(
        "{tree}\nnot connected to the checkout:\n{}",
        otlp::render(&apart)
    );
    for hop in &hops {
        let found = of(hop, &spans);
        assert!(!found.is_empty(), "no span of {}:\n{tree}", hop.what);
        for span in found {
            assert!(
                connected.contains(&span.trace_id),
                "{} ({} {}) is in trace {}, which nothing links to the checkout's {checkout_trace}:\n{tree}",
                hop.what,
                hop.service,
                span.name,
                span.trace_id
            );
        }
    }
    // Each batch of events carries the webhook requests that brought it.
    let webhooks: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.attribute("path") == "/v1/webhooks/stripe")
        .collect();
    for batch in spans
        .iter()
        .filter(|s| s.attribute("kind") == "process_events")
    {
        assert!(
            webhooks.iter().any(|w| follows(batch, w)),
            "a process_events job follows no webhook request:\n{tree}"
        );
    }
    // The checkout's own work stays in its trace; only Stripe's webhook comes from outside.
    for hop in hops.iter().filter(|h| {
        !matches!(
            h.what,
            "Stripe's webhook" | "processing the webhook's events"
        )
    }) {
        for span in of(hop, &spans) {
            assert_eq!(
                span.trace_id, checkout_trace,
                "{} left the checkout's trace:\n{tree}",
                hop.what
            );
        }
    }
    let probes: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| ["/healthz", "/readyz", "/metrics"].contains(&s.attribute("path")))
        .collect();
    assert!(probes.is_empty(), "probes were traced: {probes:?}");

    for runtime in [
        gateway.runtime,
        cart.runtime,
        payments.runtime,
        orders.runtime,
        sim,
    ] {
        runtime.shutdown_background();
    }
}
