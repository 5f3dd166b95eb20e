//! Store outages: with Redis or Postgres gone, a gateway keeps routing on its last snapshot
//! (and still rolls back on its own), reports not-ready, and picks up changes again through a
//! fresh subscription once Redis returns.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use sqlx::{Connection as _, PgConnection};
use testkit::OwnRedis;

use crate::support::{TestGateway, World, eventually, problem};

async fn rollout(gateway: &TestGateway, name: &str) -> u64 {
    gateway.flag(name).await["rollout_percent"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn gateways_keep_routing_without_redis_and_resubscribe_when_it_returns() {
    let mut redis = OwnRedis::start().await;
    let world = World::new().await;
    let mut settings = world.settings();
    settings.redis_url = redis.url();
    settings.flags_resync = Duration::from_secs(3600);
    let a = world.gateway_with(settings.clone()).await;
    let b = world.gateway_with(settings).await;
    a.set_flag("cart", true, 100).await;
    eventually("the ramp reaches gateway B", || async {
        rollout(&b, "cart").await == 100
    })
    .await;

    redis.stop().await;
    // Routing reads only the snapshot: it goes on.
    let side = b
        .side(
            b.request(Method::POST, "/v1/carts")
                .header("x-customer-id", "c"),
        )
        .await;
    assert_eq!(side, "cart");
    let ready = b.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 503);

    redis.restart().await;
    a.set_flag("cart", true, 5).await;
    let took = eventually(
        "the change reaches gateway B once Redis is back",
        || async { rollout(&b, "cart").await == 5 },
    )
    .await;
    println!("change reached gateway B {took:?} after Redis came back");
}

#[tokio::test]
async fn without_postgres_the_last_snapshot_keeps_routing_and_rolling_back() {
    let world = World::new().await;
    let mut settings = world.settings();
    settings.flags_resync = Duration::from_millis(50);
    let database_url = settings.db.url.clone();
    let gateway = world.gateway_with(settings).await;
    gateway.set_flag("cart", true, 100).await;

    // Postgres goes away for this gateway: its database is dropped under it.
    let (server, name) = database_url.rsplit_once('/').unwrap();
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    eventually("readiness reports Postgres down", || async {
        let ready = gateway
            .request(Method::GET, "/readyz")
            .send()
            .await
            .unwrap();
        ready.status() == 503
    })
    .await;

    let side = gateway
        .side(
            gateway
                .request(Method::POST, "/v1/carts")
                .header("x-customer-id", "c"),
        )
        .await;
    assert_eq!(side, "cart", "routing goes on from the last snapshot");
    let change = gateway
        .admin(Method::PUT, "/admin/flags/cart")
        .json(&json!({"rollout_percent": 50}))
        .send()
        .await
        .unwrap();
    let body = problem(change, 503).await;
    assert!(
        !body.to_string().contains("database"),
        "no internals: {body}"
    );

    // The new side failing still rolls back, in this process at least.
    world.cart.fail_every(1, 500);
    crate::rollback::create_carts(&gateway, 100).await;
    assert_eq!(rollout(&gateway, "cart").await, 0);
    let side = gateway
        .side(
            gateway
                .request(Method::POST, "/v1/carts")
                .header("x-customer-id", "c"),
        )
        .await;
    assert_eq!(side, "legacy");
}
