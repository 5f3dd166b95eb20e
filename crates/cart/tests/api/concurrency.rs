//! Concurrent writers never lose an update, on a single Redis and on a cluster.

use serde_json::json;
use tokio::task::JoinSet;

use crate::support::{Store, spawn_on};

on_every_store!(sixty_four_concurrent_adds_to_one_cart_sum_exactly);
async fn sixty_four_concurrent_adds_to_one_cart_sum_exactly(store: Store) {
    let app = spawn_on(store).await;
    let tee = app.product("Tee", 100, "USD").await;
    let mug = app.product("Mug", 100, "USD").await;
    let cart = app.create_cart("USD").await;

    let mut adds = JoinSet::new();
    for i in 0..64i64 {
        let (http, url) = (
            app.http.clone(),
            format!("{}/v1/carts/{cart}/items", app.url),
        );
        let sku = if i % 2 == 0 { tee.clone() } else { mug.clone() };
        adds.spawn(async move {
            http.post(url)
                .json(&json!({"sku": sku, "quantity": 1 + i % 3}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = adds.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let expected_tee: i64 = (0..64).filter(|i| i % 2 == 0).map(|i| 1 + i % 3).sum();
    let expected_mug: i64 = (0..64).filter(|i| i % 2 == 1).map(|i| 1 + i % 3).sum();
    let view = app.cart(&cart).await;
    let quantity = |sku: &str| {
        view["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["sku"] == sku)
            .unwrap()["quantity"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(quantity(&tee), expected_tee);
    assert_eq!(quantity(&mug), expected_mug);
    assert_eq!(view["version"], 65, "every add is one version");
    assert_eq!(
        view["item_count"].as_i64().unwrap(),
        expected_tee + expected_mug
    );
}

on_every_store!(concurrent_writers_with_the_same_if_match_let_exactly_one_through);
async fn concurrent_writers_with_the_same_if_match_let_exactly_one_through(store: Store) {
    let app = spawn_on(store).await;
    let tee = app.product("Tee", 100, "USD").await;
    let cart = app.create_cart("USD").await;

    let mut writes = JoinSet::new();
    for _ in 0..16 {
        let (http, url, tee) = (
            app.http.clone(),
            format!("{}/v1/carts/{cart}/items", app.url),
            tee.clone(),
        );
        writes.spawn(async move {
            let request = http
                .post(url)
                .header("if-match", "\"1\"")
                .json(&json!({"sku": tee, "quantity": 1}));
            request.send().await.unwrap().status().as_u16()
        });
    }
    let statuses = writes.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        15,
        "{statuses:?}"
    );
    assert_eq!(app.cart(&cart).await["items"][0]["quantity"], 1);
}
