//! Flag changes reach every gateway: through Redis pub/sub as they happen, and through the
//! periodic resync when a broadcast is lost. Two gateways share one Postgres and one Redis,
//! as replicas do; the one that hears a change runs in a process of its own. On a Redis
//! Cluster the change reaches a gateway subscribed to another node than the publisher's.

use std::time::Duration;

use reqwest::Method;
use testkit::redis_cluster::RedisCluster;

use crate::support::{TestGateway, World, eventually};

async fn rollout(gateway: &TestGateway, name: &str) -> u64 {
    gateway.flag(name).await["rollout_percent"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_flag_change_on_one_gateway_reaches_another() {
    a_flag_change_reaches_another_gateway(World::new().await).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_flag_change_reaches_a_gateway_listening_on_another_node() {
    let cluster = RedisCluster::shared().await;
    let mut world = World::new().await;
    // A change is published on the master of the channel's slot; gateway B listens on the
    // next one, so the message has to cross the cluster bus.
    let publisher = cluster.node_of(world.channel()).await;
    world.use_redis(cluster.url_from((publisher + 1) % cluster.masters()));
    a_flag_change_reaches_another_gateway(world).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_gateway_that_loses_its_node_listens_on_the_next_one() {
    // A cluster of its own: the test kills a master.
    let cluster = RedisCluster::start().await;
    let mut world = World::new().await;
    let publisher = cluster.node_of(world.channel()).await;
    let listened = (publisher + 1) % cluster.masters();
    world.use_redis(cluster.url_from(listened));
    let mut slow_resync = world.settings();
    slow_resync.flags_resync = Duration::from_secs(3600);
    let a = world.gateway_with(slow_resync).await;
    let b = world.gateway_process(Duration::from_secs(3600)).await;
    a.set_flag("cart", true, 37).await;
    eventually("the change reaches gateway B", || async {
        rollout(&b, "cart").await == 37
    })
    .await;

    cluster.kill(listened).await;
    let mut percent = 37;
    let took = eventually("gateway B hears changes again", || {
        percent = percent % 99 + 1;
        let (a, b, percent) = (&a, &b, percent);
        async move {
            a.set_flag("cart", true, percent as u8).await;
            rollout(b, "cart").await == percent
        }
    })
    .await;
    println!("a gateway whose Redis node was lost heard changes again after {took:?}");
}

async fn a_flag_change_reaches_another_gateway(world: World) {
    let mut slow_resync = world.settings();
    slow_resync.flags_resync = Duration::from_secs(3600);
    let a = world.gateway_with(slow_resync).await;
    // A replica in a process of its own, hearing only the broadcast.
    let b = world.gateway_process(Duration::from_secs(3600)).await;

    a.set_flag("cart", true, 37).await;
    let took = eventually("the change reaches gateway B", || async {
        rollout(&b, "cart").await == 37
    })
    .await;
    println!("flag change propagated to a second gateway in {took:?} (pub/sub)");

    let response = a
        .admin(Method::POST, "/admin/flags/cart/rollback")
        .json(&serde_json::json!({"reason": "checkout errors"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let took = eventually("the rollback reaches gateway B", || async {
        rollout(&b, "cart").await == 0
    })
    .await;
    println!("manual rollback propagated to a second gateway in {took:?} (pub/sub)");
}

#[tokio::test]
async fn an_automatic_rollback_on_one_gateway_reaches_another() {
    let world = World::new().await;
    let a = world.gateway().await;
    let b = world.gateway_process(Duration::from_secs(3600)).await;
    a.set_flag("orders", true, 100).await;
    eventually("the ramp reaches gateway B", || async {
        rollout(&b, "orders").await == 100
    })
    .await;

    world.orders.fail_every(10, 502);
    for i in 0..100u8 {
        a.request_from(10 + i % 7, Method::POST, "/v1/orders")
            .header("x-customer-id", format!("customer-{i}"))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(rollout(&a, "orders").await, 0);
    let took = eventually("the automatic rollback reaches gateway B", || async {
        rollout(&b, "orders").await == 0
    })
    .await;
    println!("automatic rollback propagated to a second gateway in {took:?}");
}

#[tokio::test]
async fn a_lost_broadcast_is_healed_by_the_resync() {
    let world = World::new().await;
    let mut settings = world.settings();
    settings.flags_resync = Duration::from_millis(100);
    let gateway = world.gateway_with(settings).await;

    // A change written straight to Postgres is never broadcast.
    sqlx::query("UPDATE flags.flags SET rollout_percent = 42, version = version + 1 WHERE name = 'payments'")
        .execute(&gateway.pool)
        .await
        .unwrap();
    let took = eventually("the resync picks the change up", || async {
        rollout(&gateway, "payments").await == 42
    })
    .await;
    println!("unbroadcast change picked up by resync in {took:?}");
}

#[tokio::test]
async fn the_initial_rollout_applies_only_to_flags_nobody_changed() {
    let world = World::new().await;
    let mut settings = world.settings();
    settings.initial_rollout = Some(100);
    let first = world.gateway_with(settings.clone()).await;
    assert_eq!(rollout(&first, "cart").await, 100);
    assert_eq!(first.audit("cart").await[0]["action"], "initial-rollout");
    first.set_flag("cart", true, 10).await;
    drop(first);

    settings.initial_rollout = Some(0);
    let second = world.gateway_with(settings).await;
    assert_eq!(rollout(&second, "cart").await, 10);
    assert_eq!(rollout(&second, "orders").await, 100);
}
