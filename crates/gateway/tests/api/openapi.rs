//! The admin listener's `/openapi.json`: valid OpenAPI 3.1, with its auth declared and as
//! strict as the admin API.

use reqwest::Method;
use serde_json::Value;
use testkit::openapi::{assert_valid, operations, statuses};

use crate::support::{TestGateway, World};

async fn document(gateway: &TestGateway) -> Value {
    let response = gateway
        .admin_request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let world = World::new().await;
    let gateway = world.gateway().await;
    let doc = document(&gateway).await;
    assert_valid(&doc).await;
}

#[tokio::test]
async fn the_openapi_document_declares_the_admin_auth_and_the_audit_limit() {
    let world = World::new().await;
    let gateway = world.gateway().await;
    let doc = document(&gateway).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (method, path, op) in operations(&doc) {
        if !path.starts_with("/admin/") {
            continue;
        }
        assert_eq!(
            op["security"][0]["bearer"],
            serde_json::json!([]),
            "{method} {path}"
        );
        let answers = statuses(op);
        for status in ["401", "403", "429"] {
            assert!(
                answers.iter().any(|s| s == status),
                "{method} {path} {status}"
            );
        }
    }
    let limit = doc["paths"]["/admin/flags/{name}/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit is declared");
    assert_eq!(limit["in"], "query");
    assert_ne!(limit["required"], true);
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 1000);
    let change = &doc["paths"]["/admin/flags/{name}"]["put"];
    for status in ["400", "415"] {
        assert!(statuses(change).iter().any(|s| s == status), "PUT {status}");
    }
    let rollback = &doc["paths"]["/admin/flags/{name}/rollback"]["post"];
    assert!(statuses(rollback).iter().any(|s| s == "400"));
    let update = &doc["components"]["schemas"]["FlagUpdate"]["properties"];
    assert_eq!(update["rollout_percent"]["maximum"], 100);
}
