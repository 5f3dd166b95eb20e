//! A stand-in for the orders service's `payment-events` route: records every notification
//! and answers as told (acknowledge, fail for a while, or not know the order).

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::{Value, json};

use crate::support::INTERNAL;

#[derive(Default)]
struct OrdersState {
    received: Vec<(String, Value)>,
    fail_next: u32,
    unknown_orders: bool,
}

/// A stand-in for orders' `payment-events` route that records what it is told.
#[derive(Clone, Default)]
pub struct OrdersStub(Arc<Mutex<OrdersState>>);

impl OrdersStub {
    /// Every notification so far: order id and body (failed attempts included).
    pub fn received(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().received.clone()
    }

    /// The notifications orders acknowledged for `order`.
    pub fn acknowledged(&self, order: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|(o, body)| o == order && body["acknowledged"] == true)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Answers 503 to the next `n` notifications.
    pub fn fail_next(&self, n: u32) {
        self.0.lock().unwrap().fail_next = n;
    }

    /// Answers 404 (no such order) from now on.
    pub fn forget_orders(&self) {
        self.0.lock().unwrap().unknown_orders = true;
    }

    /// Serves the stand-in on a random port; answers its base URL.
    pub async fn serve(self) -> String {
        let app = Router::new()
            .route("/internal/v1/orders/{id}/payment-events", post(receive))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

async fn receive(
    State(stub): State<OrdersStub>,
    Path(order): Path<String>,
    headers: HeaderMap,
    Json(mut body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    assert_eq!(headers["authorization"], format!("Bearer {INTERNAL}"));
    let mut state = stub.0.lock().unwrap();
    let status = if state.unknown_orders {
        StatusCode::NOT_FOUND
    } else if state.fail_next > 0 {
        state.fail_next -= 1;
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    body["acknowledged"] = Value::Bool(status == StatusCode::OK);
    state.received.push((order, body));
    (status, Json(json!({"status": "ok"})))
}
