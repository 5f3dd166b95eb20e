//! Faults: Redis, or one master of a Redis Cluster, going away and coming back; the catalog
//! cache serving warm reads without Postgres and picking up a price change once its entries
//! expire.

use std::time::Duration;

use testkit::{OwnRedis, redis_cluster::RedisCluster};

use crate::support::{eventually, problem, settings, spawn_with};

#[tokio::test]
async fn redis_going_away_is_a_fast_503_and_the_service_recovers_by_itself() {
    let mut redis = OwnRedis::start().await;
    let mut settings = settings();
    settings.redis_url = redis.url();
    let app = spawn_with(settings).await;
    let sku = app.product("Tee", 100, "USD").await;
    let cart = app.create_cart("USD").await;
    assert_eq!(app.add(&cart, &sku, 1).await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);

    redis.stop().await;
    let started = std::time::Instant::now();
    let body = problem(app.get(&format!("/v1/carts/{cart}")).await, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the 503 comes from the bounded timeout, not a hang"
    );
    assert!(
        !body.to_string().contains("redis://"),
        "internals do not leak: {body}"
    );
    problem(app.add(&cart, &sku, 1).await, 503).await;
    problem(app.post("/v1/carts", serde_json::json!({})).await, 503).await;
    problem(app.get("/readyz").await, 503).await;

    redis.restart().await;
    eventually("the service serves carts again", || async {
        app.post("/v1/carts", serde_json::json!({})).await.status() == 201
    })
    .await;
    eventually("readiness recovers", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
}

#[tokio::test]
async fn a_lost_cluster_master_is_a_503_for_its_carts_only_and_they_come_back_with_it() {
    // A cluster of its own: losing a master would fail the other tests' carts.
    let cluster = RedisCluster::start().await;
    let mut settings = settings();
    settings.redis_url = cluster.url();
    let app = spawn_with(settings).await;
    let sku = app.product("Tee", 100, "USD").await;
    let (lost, elsewhere) = (
        app.cart_on(&cluster, 0).await,
        app.cart_on(&cluster, 1).await,
    );
    assert_eq!(app.add(&lost, &sku, 1).await.status(), 200);

    cluster.kill(0).await;
    let body = problem(app.get(&format!("/v1/carts/{lost}")).await, 503).await;
    assert!(
        !body.to_string().contains("redis") && !body.to_string().contains("127.0.0.1"),
        "internals do not leak: {body}"
    );
    problem(app.add(&lost, &sku, 1).await, 503).await;
    assert_eq!(
        app.add(&elsewhere, &sku, 2).await.status(),
        200,
        "the other masters' carts are served"
    );
    assert_eq!(app.cart(&elsewhere).await["items"][0]["quantity"], 2);
    assert_eq!(
        app.get("/readyz").await.status(),
        200,
        "a cluster that serves most carts keeps the instance in rotation"
    );

    cluster.restart(0).await;
    eventually("the restarted master's carts are served again", || async {
        app.get(&format!("/v1/carts/{lost}")).await.status() != 503
    })
    .await;
    // The test cluster keeps nothing on disk: the master came back empty.
    problem(app.get(&format!("/v1/carts/{lost}")).await, 404).await;
    let fresh = app.cart_on(&cluster, 0).await;
    assert_eq!(app.add(&fresh, &sku, 3).await.status(), 200);
    assert_eq!(app.cart(&fresh).await["items"][0]["quantity"], 3);
}

#[tokio::test]
async fn a_cart_service_started_while_a_master_is_lost_serves_the_other_masters_carts() {
    let cluster = RedisCluster::start().await;
    cluster.kill(0).await;
    let mut settings = settings();
    settings.redis_url = cluster.url();
    let app = spawn_with(settings).await;
    let sku = app.product("Tee", 100, "USD").await;

    // The cart's scripts were never loaded on this cluster: the first add loads them on the
    // masters that answer.
    let mut served = None;
    for _ in 0..20 {
        let response = app.post("/v1/carts", serde_json::json!({})).await;
        if response.status() == 201 {
            served = Some(response.json::<serde_json::Value>().await.unwrap()["id"].to_string());
            break;
        }
        problem(response, 503).await;
    }
    let cart = served
        .expect("a cart lands on a live master")
        .replace('"', "");
    assert_eq!(app.add(&cart, &sku, 2).await.status(), 200);
    assert_eq!(app.cart(&cart).await["items"][0]["quantity"], 2);
}

#[tokio::test]
async fn a_warm_cache_serves_the_old_price_and_the_new_price_shows_after_the_ttl() {
    let mut settings = settings();
    settings.catalog_cache_ttl = Duration::from_millis(300);
    let app = spawn_with(settings).await;
    let sku = app.product("Tee", 1000, "USD").await;
    let cart = app.create_cart("USD").await;
    app.add(&cart, &sku, 2).await;
    assert_eq!(app.cart(&cart).await["subtotal"], 2000);

    sqlx::query("UPDATE catalog.products SET unit_price = 1500 WHERE sku = $1")
        .bind(&sku)
        .execute(&app.pool)
        .await
        .unwrap();
    // Within the TTL the cached product answers: proof the read made no Postgres query.
    let cached = app.cart(&cart).await;
    if cached["subtotal"] == 2000 {
        eventually("the new price shows", || async {
            app.cart(&cart).await["subtotal"] == 3000
        })
        .await;
    } else {
        panic!("the price changed before the cache entry could have expired: {cached}");
    }
}

#[tokio::test]
async fn warm_reads_need_no_postgres() {
    let mut settings = settings();
    settings.catalog_cache_ttl = Duration::from_secs(600);
    let app = spawn_with(settings).await;
    let sku = app.product("Tee", 700, "USD").await;
    let cart = app.create_cart("USD").await;
    app.add(&cart, &sku, 1).await;
    app.cart(&cart).await;

    // Take the product out of Postgres entirely: a warm read still prices it.
    sqlx::query("DELETE FROM catalog.products WHERE sku = $1")
        .bind(&sku)
        .execute(&app.pool)
        .await
        .unwrap();
    for _ in 0..20 {
        let view = app.cart(&cart).await;
        assert_eq!(view["subtotal"], 700);
        assert_eq!(view["items"][0]["available"], true);
    }
}
