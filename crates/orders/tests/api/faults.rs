//! Faults: payments failing, a worker dying mid-saga, a lost job, a flooded provider.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::support::{Mode, eventually, settings, spawn, spawn_with};

#[tokio::test]
async fn payments_failing_twice_then_answering_makes_one_payment_and_confirms() {
    let app = spawn().await;
    app.payments.set_mode(Mode::FailTimes(2));
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, Some("pm_card_visa")).await;
    app.wait_for(&order, "confirmed").await;
    assert_eq!(app.payments.calls().len(), 3);
    assert_eq!(app.payments.payments(), 1);
    let keys: std::collections::HashSet<String> =
        app.payments.calls().into_iter().map(|c| c.key).collect();
    assert_eq!(
        keys.len(),
        1,
        "every retry carries the same idempotency key"
    );
}

#[tokio::test]
async fn payments_always_failing_dead_letters_the_job_compensates_and_a_replay_completes_it() {
    let app = spawn().await;
    app.payments.set_mode(Mode::AlwaysFail);
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 2).await;
    let order = app.order(&cart, Some("pm_card_visa")).await;

    let failed = app.wait_for(&order, "failed").await;
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .starts_with("processing_failed"),
        "{failed}"
    );
    assert_eq!(
        app.stock(&sku).await["reserved"],
        0,
        "the reservation is released"
    );
    assert_eq!(app.payments.calls().len(), 3, "bounded attempts");

    let dead: Vec<Value> = testkit::json_of(
        app.http
            .get(format!("{}/admin/jobs/dead", app.url))
            .bearer_auth("test-admin"),
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], "process_order");
    assert_eq!(dead[0]["payload"]["order_id"], order);

    app.payments.set_mode(Mode::Normal);
    let replay = app
        .http
        .post(format!(
            "{}/admin/jobs/dead/{}/replay",
            app.url, dead[0]["id"]
        ))
        .bearer_auth("test-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    app.wait_for(&order, "confirmed").await;
    assert_eq!(
        app.stock(&sku).await,
        json!({"sku": sku, "on_hand": 3, "reserved": 0, "available": 3})
    );
    let dead: Vec<Value> = testkit::json_of(
        app.http
            .get(format!("{}/admin/jobs/dead", app.url))
            .bearer_auth("test-admin"),
    )
    .await;
    assert!(dead.is_empty());
}

#[tokio::test]
async fn a_rejected_payment_is_not_retried_and_the_order_is_compensated() {
    let app = spawn().await;
    app.payments.set_mode(Mode::Reject);
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, Some("pm_card_visa")).await;
    app.wait_for(&order, "failed").await;
    assert_eq!(app.payments.calls().len(), 1);
    assert_eq!(app.stock(&sku).await["available"], 5);
}

#[tokio::test]
async fn a_worker_killed_mid_saga_is_replaced_and_the_order_completes_exactly_once() {
    let mut settings = settings().await;
    settings.worker.job_timeout = Duration::from_millis(500);
    let mut app = spawn_with(settings, true).await;
    let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    app.payments.hold(gate.clone(), entered.clone());
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, Some("pm_card_visa")).await;

    entered.notified().await;
    app.kill_worker();
    app.start_worker();
    // The new worker takes the job once the dead one's lease runs out, and calls again.
    entered.notified().await;
    gate.notify_waiters();
    app.wait_for(&order, "confirmed").await;

    assert_eq!(
        app.payments.payments(),
        1,
        "one payment, whatever the number of calls"
    );
    assert_eq!(app.transitions_to(&order, "confirmed").await, 1);
    assert_eq!(app.stock(&sku).await["on_hand"], 4);
}

#[tokio::test]
async fn the_sweeper_hands_an_order_whose_job_was_lost_back_to_the_saga() {
    let mut settings = settings().await;
    settings.stuck_after = Duration::ZERO;
    let app = spawn_with(settings, false).await;
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, Some("pm_card_visa")).await;
    sqlx::query("DELETE FROM orders.jobs")
        .execute(&app.pool)
        .await
        .unwrap();

    let enqueued = orders::jobs::sweep_once(&app.core.saga, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(enqueued, 1);
    let mut app = app;
    app.start_worker();
    app.wait_for(&order, "confirmed").await;
}

#[tokio::test]
async fn a_backlog_never_exceeds_the_payment_rate_cap_in_any_second() {
    a_backlog_drains_at_the_cap(testkit::redis_url()).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_backlog_never_exceeds_the_payment_rate_cap_in_any_second() {
    let cluster = testkit::redis_cluster::RedisCluster::shared().await;
    a_backlog_drains_at_the_cap(cluster.url()).await;
}

/// Two workers sharing the cap through the Redis at `redis_url` drain a backlog: never more
/// than the cap in any one-second window, and not far below it.
async fn a_backlog_drains_at_the_cap(redis_url: String) {
    const CAP: u32 = 100;
    const ORDERS: usize = 500;
    let mut settings = settings().await;
    settings.redis_url = redis_url;
    settings.payments_rate_limit = CAP;
    settings.worker.concurrency = 64;
    let mut app = spawn_with(settings, false).await;
    let sku = app.product(1, ORDERS as i64).await;
    for _ in 0..ORDERS {
        let cart = app.cart_with(&sku, 1).await;
        app.order(&cart, Some("pm_card_visa")).await;
    }
    // Two workers drain the backlog; the cap is shared through Redis.
    app.start_worker();
    let second = {
        let (core, settings) = (app.core.clone(), app.settings.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        (
            tokio::spawn({
                let stop = stop.clone();
                async move { orders::work(&core, &settings, stop).await }
            }),
            stop,
        )
    };
    eventually("the backlog drains", || async {
        app.payments.calls().len() >= ORDERS
    })
    .await;
    second.1.cancel();
    let _ = second.0.await;

    let mut times: Vec<_> = app.payments.calls().into_iter().map(|c| c.at).collect();
    times.sort();
    let mut worst = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        worst = worst.max(end - start + 1);
    }
    // How close to the cap the backlog drains is a speed, measured by `cargo xtask bench
    // queue`; here only the ceiling is asserted, which fails without the shared cap.
    println!(
        "payment calls: {}, most in any one-second window: {worst} (cap {CAP})",
        times.len()
    );
    assert!(
        worst <= CAP as usize,
        "{worst} calls in one second, cap {CAP}"
    );
    app.kill_worker();
}

#[tokio::test]
async fn a_transaction_cancelled_while_it_begins_leaves_no_transaction_open_in_the_pool() {
    use futures_util::FutureExt as _;
    let url = settings().await.db.url;
    // One connection, so the statement after the cancelled begin runs on the same session.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut other = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();

    // Drive a begin until Postgres has run its BEGIN, then give up on it, as a timeout or an
    // aborted task does: the answer to BEGIN is never read. (A begin that completes in one
    // poll is rolled back, and another one tried.)
    let mut cancelled = false;
    'attempts: for _ in 0..20 {
        let mut begin = Box::pin(common::db::begin(&pool));
        for _ in 0..20 {
            if let Some(tx) = (&mut begin).now_or_never() {
                tx.unwrap().rollback().await.unwrap();
                continue 'attempts;
            }
            for _ in 0..25 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
                        .bind(backend)
                        .fetch_one(&mut other)
                        .await
                        .unwrap();
                if state.as_deref() == Some("idle in transaction") {
                    cancelled = true;
                    break 'attempts;
                }
            }
        }
    }
    assert!(
        cancelled,
        "no begin was caught between its BEGIN and the answer"
    );

    // The pool's next statement must commit by itself.
    let sku = format!("SKU-{}", &common::id::new_id("p")[2..14]).to_uppercase();
    sqlx::query(
        "INSERT INTO catalog.products (sku, name, unit_price, currency) VALUES ($1, $1, 1, 'USD')",
    )
    .bind(&sku)
    .execute(&pool)
    .await
    .unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog.products WHERE sku = $1")
        .bind(&sku)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(seen, 1, "the write after a cancelled begin is committed");
}
