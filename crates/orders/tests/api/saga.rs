//! The order processor: the saga's outcomes, stock accounting, and payment events.

use orders::domain::{OrderId, Status};
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::{settings, spawn, spawn_with};

#[tokio::test]
async fn a_visa_payment_confirms_the_order_sells_the_stock_and_clears_the_cart() {
    let app = spawn().await;
    let sku = app.product(2500, 10).await;
    let cart = app.cart_with(&sku, 3).await;
    let order = app.order(&cart, Some("pm_card_visa")).await;
    let confirmed = app.wait_for(&order, "confirmed").await;
    assert!(
        confirmed["payment"]["id"]
            .as_str()
            .unwrap()
            .starts_with("pay_")
    );
    assert_eq!(
        app.stock(&sku).await,
        json!({"sku": sku, "on_hand": 7, "reserved": 0, "available": 7})
    );
    app.cart_deleted(&cart).await;
    let path = [
        "pending",
        "reserved",
        "awaiting_payment",
        "paid",
        "confirmed",
    ];
    let expected: Vec<(Option<String>, String)> = path
        .iter()
        .enumerate()
        .map(|(i, to)| {
            (
                i.checked_sub(1).map(|p| path[p].to_owned()),
                (*to).to_owned(),
            )
        })
        .collect();
    assert_eq!(app.history(&order).await, expected);
}

#[tokio::test]
async fn a_decline_fails_the_order_and_returns_the_stock() {
    let app = spawn().await;
    let sku = app.product(2500, 10).await;
    let cart = app.cart_with(&sku, 4).await;
    let order = app.order(&cart, Some("pm_card_chargeDeclined")).await;
    let failed = app.wait_for(&order, "failed").await;
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .starts_with("payment_declined"),
        "{failed}"
    );
    assert_eq!(app.stock(&sku).await["available"], 10);
    assert_eq!(app.stock(&sku).await["reserved"], 0);
}

#[tokio::test]
async fn an_unpaid_order_is_cancelled_at_the_payment_timeout_and_its_stock_returned() {
    let mut settings = settings().await;
    settings.payment_timeout = std::time::Duration::from_millis(500);
    let app = spawn_with(settings, true).await;
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 2).await;
    let order = app.order(&cart, None).await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    assert_eq!(
        waiting["payment"]["client_secret"], "pi_x_secret_y",
        "without a method the client secret is exposed"
    );
    assert_eq!(app.stock(&sku).await["reserved"], 2);
    let cancelled = app.wait_for(&order, "cancelled").await;
    assert_eq!(cancelled["failure_reason"], "payment_timeout");
    assert_eq!(app.stock(&sku).await["reserved"], 0);
    assert_eq!(app.stock(&sku).await["on_hand"], 5);
}

#[tokio::test]
async fn two_hundred_concurrent_checkouts_of_fifty_units_confirm_exactly_fifty() {
    let app = spawn().await;
    let sku = app.product(100, 50).await;
    let mut carts = Vec::new();
    for _ in 0..200 {
        carts.push(app.cart_with(&sku, 1).await);
    }
    let mut checkouts = JoinSet::new();
    for (i, cart) in carts.into_iter().enumerate() {
        let (http, url) = (app.http.clone(), format!("{}/v1/orders", app.url));
        checkouts.spawn(async move {
            let body = json!({"cart_id": cart, "email": "a@example.com", "payment_method": "pm_card_visa"});
            let response = http.post(url).header("idempotency-key", format!("k{i}")).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 202);
            response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
        });
    }
    let orders = checkouts.join_all().await;
    crate::support::eventually("every order is final", || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE status NOT IN ('confirmed', 'failed', 'cancelled')")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        open == 0
    })
    .await;
    let counts: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT status, failure_reason, count(*) FROM orders.orders GROUP BY 1, 2 ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        counts,
        vec![
            ("confirmed".to_owned(), None, 50),
            ("failed".to_owned(), Some("out_of_stock".to_owned()), 150)
        ],
        "{} orders",
        orders.len()
    );
    assert_eq!(
        app.stock(&sku).await,
        json!({"sku": sku, "on_hand": 0, "reserved": 0, "available": 0})
    );
}

#[tokio::test]
async fn duplicate_and_out_of_order_payment_events_move_the_order_once() {
    let app = spawn().await;
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    let payment = waiting["payment"]["id"].as_str().unwrap().to_owned();

    let mut events = JoinSet::new();
    for _ in 0..5 {
        let (http, url, payment) = (
            app.http.clone(),
            format!("{}/internal/v1/orders/{order}/payment-events", app.url),
            payment.clone(),
        );
        events.spawn(async move {
            http.post(url)
                .bearer_auth("test-internal")
                .json(&json!({"payment_id": payment, "status": "succeeded"}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    assert!(events.join_all().await.iter().all(|s| *s == 200));
    // A stale failure arriving after the success changes nothing.
    let late = app
        .payment_event(
            &order,
            json!({"payment_id": payment, "status": "failed", "reason": "card_declined"}),
        )
        .await;
    assert_eq!(late.status(), 200);

    assert_eq!(app.get_order(&order).await["status"], "confirmed");
    assert_eq!(app.transitions_to(&order, "paid").await, 1);
    assert_eq!(app.transitions_to(&order, "confirmed").await, 1);
    assert_eq!(app.transitions_to(&order, "failed").await, 0);
    assert_eq!(app.stock(&sku).await["on_hand"], 4);
}

#[tokio::test]
async fn payment_events_need_the_internal_token_and_the_orders_payment() {
    let app = spawn().await;
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    app.wait_for(&order, "awaiting_payment").await;
    let url = format!("{}/internal/v1/orders/{order}/payment-events", app.url);
    let body = json!({"payment_id": common::id::new_id("pay"), "status": "succeeded"});
    assert_eq!(
        app.http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.http
            .post(&url)
            .bearer_auth("wrong")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(app.payment_event(&order, body).await.status(), 422);
    let malformed = json!({"payment_id": "pay_other", "status": "succeeded"});
    let refused = app.payment_event(&order, malformed).await;
    let problem = testkit::problem(refused, 422).await;
    assert_eq!(problem["errors"][0]["field"], "payment_id", "{problem}");
    assert_eq!(app.get_order(&order).await["status"], "awaiting_payment");
}

#[tokio::test]
async fn the_event_stream_sends_the_current_state_then_each_change_and_ends() {
    let app = spawn().await;
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    let response = app
        .http
        .get(format!("{}/v1/orders/{order}/events", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let payment = waiting["payment"]["id"].as_str().unwrap().to_owned();
    let event = app.payment_event(
        &order,
        json!({"payment_id": payment, "status": "succeeded"}),
    );
    let (body, posted) = tokio::join!(response.text(), event);
    let body = body.unwrap();
    assert_eq!(posted.status(), 200);
    let statuses: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(statuses.first(), Some(&"awaiting_payment"), "{body}");
    assert_eq!(
        statuses.last(),
        Some(&"confirmed"),
        "the stream ends at the final state: {body}"
    );
}

#[tokio::test]
async fn a_checkout_step_is_claimed_before_housekeeping_queued_ahead_of_it() {
    // Worker off: the jobs stay queued until the test claims one itself.
    let app = spawn_with(settings().await, false).await;
    let queue = &app.core.saga.queue;
    queue_cart_clearing(queue, 20, orders::saga::HOUSEKEEPING).await;
    let sku = app.product(1000, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, Some("pm_card_visa")).await;

    let claimed = queue
        .claim(
            "test",
            &[orders::saga::PROCESS_ORDER, orders::saga::CLEAR_CART],
            1,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].kind, orders::saga::PROCESS_ORDER);
    assert_eq!(claimed[0].payload["order_id"], order.as_str());
}

#[tokio::test]
async fn a_claim_takes_expired_leases_first_and_never_more_than_its_limit() {
    // Worker off: the test claims itself.
    let app = spawn_with(settings().await, false).await;
    let queue = &app.core.saga.queue;
    queue_cart_clearing(queue, 5, 0).await;
    let kinds = [orders::saga::CLEAR_CART];
    let lease = std::time::Duration::from_secs(30);

    let first = queue.claim("dies", &kinds, 2, lease).await.unwrap();
    assert_eq!(first.len(), 2);
    // Its worker died: the leases run out.
    sqlx::query("UPDATE orders.jobs SET locked_until = now() - interval '1 second' WHERE locked_by = 'dies'")
        .execute(&app.pool)
        .await
        .unwrap();

    let second = queue.claim("lives", &kinds, 3, lease).await.unwrap();
    assert_eq!(
        second.len(),
        3,
        "the limit holds with expired and due jobs both there"
    );
    let mut retried: Vec<i64> = second
        .iter()
        .filter(|j| j.attempt == 2)
        .map(|j| j.id)
        .collect();
    let mut expected: Vec<i64> = first.iter().map(|j| j.id).collect();
    retried.sort_unstable();
    expected.sort_unstable();
    assert_eq!(retried, expected, "both expired leases are taken over");

    let rest = queue.claim("lives", &kinds, 10, lease).await.unwrap();
    assert_eq!(rest.len(), 2, "the two jobs left");
    assert!(rest.iter().all(|j| j.attempt == 1));
}

#[tokio::test]
async fn a_checkout_wakes_the_worker_without_waiting_for_its_poll() {
    // The worker polls once an hour: only the wake-up after a checkout can start its saga.
    let mut settings = settings().await;
    settings.worker.poll_interval = std::time::Duration::from_secs(3600);
    let app = spawn_with(settings, true).await;
    let sku = app.product(1500, 5).await;
    // A first order runs the worker through its start-up claim and its cart clearing, so
    // that it then waits: the second order's job can only reach it by a wake-up.
    let first = app.cart_with(&sku, 1).await;
    let order = app.order(&first, Some("pm_card_visa")).await;
    app.wait_for(&order, "confirmed").await;
    app.cart_deleted(&first).await;
    let second = app.cart_with(&sku, 1).await;
    let order = app.order(&second, Some("pm_card_visa")).await;
    app.wait_for(&order, "confirmed").await;
}

/// Queues `n` cart-clearing jobs at `priority`, for tests that claim by hand.
async fn queue_cart_clearing(queue: &common::queue::Queue, n: usize, priority: i16) {
    let mut tx = queue.pool().begin().await.unwrap();
    for n in 0..n {
        let job = common::queue::NewJob::new(
            orders::saga::CLEAR_CART,
            json!({"cart_id": format!("crt_gone{n}")}),
        )
        .priority(priority);
        queue.enqueue(&mut tx, job).await.unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_replay_reopens_only_what_the_state_machine_lets_it() {
    // No worker: the orders stay where the test puts them.
    let app = spawn_with(settings().await, false).await;
    let sku = app.product(100, 5).await;
    let abandoned = app.order(&app.cart_with(&sku, 1).await, None).await;
    let abandoned_id = OrderId::parse(&abandoned).unwrap();
    app.core
        .saga
        .abandon(&abandoned_id, "payments: unreachable")
        .await
        .unwrap();
    app.wait_for(&abandoned, "failed").await;

    assert!(app.core.saga.reopen(&abandoned_id).await.unwrap());
    app.wait_for(&abandoned, "pending").await;
    assert_eq!(
        app.history(&abandoned).await.last().unwrap(),
        &(Some("failed".to_owned()), "pending".to_owned())
    );
    // Pending again, it is no longer abandoned: a second replay leaves it.
    assert!(!app.core.saga.reopen(&abandoned_id).await.unwrap());

    // An order that ended otherwise, yet carries the reason, is refused by the state machine
    // itself, and stays as it is.
    let cancelled = app.order(&app.cart_with(&sku, 1).await, None).await;
    let cancelled_id = OrderId::parse(&cancelled).unwrap();
    app.core
        .saga
        .abandon(&cancelled_id, "payments: unreachable")
        .await
        .unwrap();
    sqlx::query("UPDATE orders.orders SET status = 'cancelled' WHERE id = $1")
        .bind(&cancelled)
        .execute(&app.pool)
        .await
        .unwrap();
    let refused = app.core.saga.reopen(&cancelled_id).await;
    assert!(
        matches!(
            refused,
            Err(orders::store::orders::StoreError::IllegalTransition {
                from: Status::Cancelled,
                to: Status::Pending,
            })
        ),
        "{refused:?}"
    );
    assert_eq!(app.get_order(&cancelled).await["status"], "cancelled");
    assert_eq!(app.transitions_to(&cancelled, "pending").await, 1);
}
