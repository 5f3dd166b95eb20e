//! The admin API, on its own listener: bearer auth (401/403), validation (422), unknown flags
//! (404), the audit trail of who changed what (the token's actor) and why, and the
//! operational routes.

use reqwest::Method;
use serde_json::json;

use crate::support::{ADMIN_TOKEN, ALICE_TOKEN, World, problem};

#[tokio::test]
async fn admin_calls_need_the_admin_token() {
    let world = World::new().await;
    let mut settings = world.settings();
    // Ten wrong tokens follow: not yet a lockout (see the security tests).
    settings.admin_max_failures = 11;
    let gateway = world.gateway_with(settings).await;
    let calls = [
        (Method::GET, "/admin/flags"),
        (Method::GET, "/admin/flags/cart"),
        (Method::PUT, "/admin/flags/cart"),
        (Method::POST, "/admin/flags/cart/rollback"),
        (Method::GET, "/admin/flags/cart/audit"),
    ];
    for (method, path) in calls {
        let missing = gateway
            .admin_request(method.clone(), path)
            .send()
            .await
            .unwrap();
        let body = problem(missing, 401).await;
        assert_eq!(body["type"], "/problems/unauthorized", "{method} {path}");
        // A token that is the right one with a byte more, or a byte less.
        let wrong_token = if path.ends_with("audit") {
            format!("{ADMIN_TOKEN}x")
        } else {
            ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1].to_owned()
        };
        let wrong = gateway
            .admin_request(method.clone(), path)
            .bearer_auth(wrong_token)
            .json(&json!({"rollout_percent": 100}))
            .send()
            .await
            .unwrap();
        problem(wrong, 403).await;
    }
    // Nothing was changed by the refused calls.
    assert_eq!(gateway.audit("cart").await.len(), 0);
}

#[tokio::test]
async fn invalid_changes_are_422_with_the_field_named() {
    let world = World::new().await;
    let gateway = world.gateway().await;
    let cases = [
        (json!({"rollout_percent": 101}), "rollout_percent"),
        (json!({"rollout_percent": -1}), "rollout_percent"),
        (json!({}), "rollout_percent"),
        (json!({"rollout_percent": "half"}), "rollout_percent"),
        (json!({"enabled": "yes"}), "enabled"),
    ];
    for (body, field) in cases {
        let response = gateway
            .admin(Method::PUT, "/admin/flags/orders")
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body} → {problem}");
    }
    let malformed = gateway
        .admin(Method::PUT, "/admin/flags/orders")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    problem(malformed, 400).await;
    assert_eq!(gateway.flag("orders").await["rollout_percent"], 0);
}

#[tokio::test]
async fn an_unknown_flag_is_a_404() {
    let world = World::new().await;
    let gateway = world.gateway().await;
    let put = gateway
        .admin(Method::PUT, "/admin/flags/search")
        .json(&json!({"rollout_percent": 10}))
        .send()
        .await
        .unwrap();
    problem(put, 404).await;
    for (method, path) in [
        (Method::GET, "/admin/flags/search"),
        (Method::POST, "/admin/flags/search/rollback"),
        (Method::GET, "/admin/flags/search/audit"),
    ] {
        problem(gateway.admin(method, path).send().await.unwrap(), 404).await;
    }
}

#[tokio::test]
async fn every_change_is_audited_with_who_what_why_and_when() {
    let world = World::new().await;
    let gateway = world.gateway().await;
    let listed = gateway
        .admin(Method::GET, "/admin/flags")
        .send()
        .await
        .unwrap();
    let listed: serde_json::Value = listed.json().await.unwrap();
    let names: Vec<_> = listed["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["cart", "orders", "payments"]);
    assert_eq!(listed["flags"][0]["enabled"], true);
    assert_eq!(listed["flags"][0]["rollout_percent"], 0);

    // Alice's token names her; a header claiming someone else changes nothing.
    let ramped = gateway
        .admin_request(Method::PUT, "/admin/flags/cart")
        .bearer_auth(ALICE_TOKEN)
        .header("x-actor", "mallory")
        .json(&json!({"rollout_percent": 25, "reason": "first ramp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ramped.status(), 200);
    let ramped: serde_json::Value = ramped.json().await.unwrap();
    assert_eq!(ramped["rollout_percent"], 25);
    assert_eq!(ramped["enabled"], true);
    assert_eq!(ramped["version"], 1);

    let rolled_back = gateway
        .admin(Method::POST, "/admin/flags/cart/rollback")
        .header("x-actor", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(rolled_back.status(), 200);

    let audit = gateway.audit("cart").await;
    assert_eq!(audit.len(), 2);
    let (rollback, ramp) = (&audit[0], &audit[1]);
    assert_eq!(rollback["action"], "rollback");
    assert_eq!(rollback["actor"], "admin");
    assert_eq!(
        rollback["new"],
        json!({"enabled": true, "rollout_percent": 0})
    );
    assert_eq!(ramp["action"], "update");
    assert_eq!(ramp["actor"], "alice");
    assert_eq!(ramp["reason"], "first ramp");
    assert_eq!(ramp["old"], json!({"enabled": true, "rollout_percent": 0}));
    assert_eq!(ramp["new"], json!({"enabled": true, "rollout_percent": 25}));
    assert!(ramp["at"].is_string());

    let appended = sqlx::query("DELETE FROM flags.audit")
        .execute(&gateway.pool)
        .await;
    assert!(appended.is_err(), "the audit log is append-only");
}

#[tokio::test]
async fn operational_routes_answer() {
    let world = World::new().await;
    let gateway = world.gateway().await;
    assert_eq!(gateway.get_json("/healthz").await["status"], "ok");
    assert_eq!(gateway.get_json("/readyz").await["status"], "ready");
    let openapi: serde_json::Value = gateway
        .admin_request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/admin/flags",
        "/admin/flags/{name}",
        "/admin/flags/{name}/rollback",
        "/admin/flags/{name}/audit",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} undocumented");
    }
    let text = gateway.metrics().await;
    assert!(
        text.contains("gateway_rollout_percent{group=\"cart\"}"),
        "{text}"
    );
}
