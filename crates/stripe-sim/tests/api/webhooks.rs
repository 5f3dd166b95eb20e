//! Signed webhook delivery, retries, duplicates, reordering and drops.

use std::{sync::Arc, time::Duration};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use stripe_sim::DeliveryOutcome;
use stripe_webhook::{EventObject, Webhook};
use tokio::sync::Semaphore;

use crate::support::{Receiver, TestSim, WEBHOOK_SECRET, next_delivery};

/// Checks a `Stripe-Signature` the way a Stripe library does, with our own HMAC.
fn signature_is_valid(header: &str, body: &str, secret: &str) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for pair in header.split(',') {
        match pair.split_once('=') {
            Some(("t", t)) => timestamp = Some(t.to_owned()),
            Some(("v1", v1)) => signatures.push(v1.to_owned()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    signatures.iter().any(|candidate| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.{body}").as_bytes());
        hex::decode(candidate).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
    })
}

#[tokio::test]
async fn a_successful_payment_is_delivered_signed_and_in_order() {
    let mut receiver = Receiver::start(0).await;
    let app = TestSim::start(vec![receiver.url.clone()]).await;

    let pi = app.paid_intent("1500", "pm_card_visa").await;

    let created = receiver.next().await;
    let charge = receiver.next().await;
    let succeeded = receiver.next().await;
    assert_eq!(created.event_type(), "payment_intent.created");
    assert_eq!(charge.event_type(), "charge.succeeded");
    assert_eq!(succeeded.event_type(), "payment_intent.succeeded");
    assert_eq!(succeeded.object_id(), pi["id"].as_str().unwrap());
    assert!(succeeded.content_type.starts_with("application/json"));
    assert!(signature_is_valid(
        &succeeded.signature,
        &succeeded.body,
        WEBHOOK_SECRET
    ));
    assert!(!signature_is_valid(
        &succeeded.signature,
        &succeeded.body,
        "whsec_other"
    ));
    assert_eq!(succeeded.json["object"], "event");
    assert_eq!(succeeded.json["api_version"], stripe_sim::API_VERSION);
    assert_eq!(succeeded.json["livemode"], false);
    assert_eq!(succeeded.json["pending_webhooks"], 1);
    assert!(
        succeeded.json["request"]["id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );

    let event = Webhook::construct_event(&succeeded.body, &succeeded.signature, WEBHOOK_SECRET)
        .expect("async-stripe accepts the signature and the payload");
    assert_eq!(event.id.as_str(), succeeded.event_id());
    match event.data.object {
        EventObject::PaymentIntentSucceeded(intent) => {
            assert_eq!(intent.id.as_str(), pi["id"].as_str().unwrap());
            assert_eq!(intent.amount_received, 1500);
        }
        other => panic!("expected a succeeded PaymentIntent, got {other:?}"),
    }
}

#[tokio::test]
async fn every_event_the_sim_emits_parses_with_async_stripe() {
    let app = TestSim::without_webhooks().await;
    let paid = app.paid_intent("1500", "pm_card_visa").await;
    let pi = paid["id"].as_str().unwrap();
    app.post("/v1/refunds", &[("payment_intent", pi), ("amount", "500")])
        .await;
    app.control(&format!("/payment_intents/{pi}/dispute"), json!({}))
        .await;
    app.post(
        "/v1/payment_intents",
        &[
            ("amount", "1500"),
            ("currency", "usd"),
            ("payment_method", "pm_card_chargeDeclined"),
            ("confirm", "true"),
        ],
    )
    .await;
    let pending = app
        .paid_intent("1500", "pm_card_authenticationRequired")
        .await;
    app.post(
        &format!(
            "/v1/payment_intents/{}/cancel",
            pending["id"].as_str().unwrap()
        ),
        &[],
    )
    .await;
    let open: Value = app
        .post(
            "/v1/payment_intents",
            &[("amount", "700"), ("currency", "usd")],
        )
        .await
        .json()
        .await
        .unwrap();
    app.control(
        &format!(
            "/payment_intents/{}/processing",
            open["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;

    let events = app.sim.events();
    let mut kinds: Vec<String> = Vec::new();
    for event in &events {
        let payload = serde_json::to_string(event).unwrap();
        let header = Webhook::generate_test_header(&payload, WEBHOOK_SECRET, None);
        let parsed = Webhook::construct_event(&payload, &header, WEBHOOK_SECRET)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", event["type"]));
        assert!(
            !matches!(parsed.data.object, EventObject::Unknown(_)),
            "{} parsed as an unknown object",
            event["type"]
        );
        kinds.push(parsed.type_.as_str().to_owned());
    }
    for expected in [
        "payment_intent.created",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.canceled",
        "payment_intent.processing",
        "charge.succeeded",
        "charge.failed",
        "charge.refunded",
        "charge.dispute.created",
        "refund.created",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} event in {kinds:?}"
        );
    }
}

#[tokio::test]
async fn with_copies_each_event_is_delivered_that_many_times() {
    let mut receiver = Receiver::start(0).await;
    let app = TestSim::start(vec![receiver.url.clone()]).await;
    app.control("/controls", json!({ "webhook_copies": 3 }))
        .await;

    app.post(
        "/v1/payment_intents",
        &[("amount", "1500"), ("currency", "usd")],
    )
    .await;

    let copies = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    assert!(
        copies
            .iter()
            .all(|c| c.event_type() == "payment_intent.created")
    );
    assert!(copies.iter().all(|c| c.body == copies[0].body));
}

#[tokio::test]
async fn one_at_a_time_by_default_several_in_flight_when_configured() {
    // An endpoint that answers nothing until told to: what reaches it is what is in flight.
    for (concurrency, in_flight) in [(1, 1), (3, 3)] {
        let gate = Arc::new(Semaphore::new(0));
        let mut receiver = Receiver::start_gated(0, Some(gate.clone())).await;
        let app = TestSim::start_with(vec![receiver.url.clone()], |config| {
            config.webhook_concurrency = concurrency;
        })
        .await;
        // Three events: payment_intent.created, charge.succeeded, payment_intent.succeeded.
        app.paid_intent("1500", "pm_card_visa").await;
        let mut types = Vec::new();
        for _ in 0..in_flight {
            types.push(receiver.next().await.event_type().to_owned());
        }
        assert_eq!(types[0], "payment_intent.created");
        // Nothing more arrives while those are unanswered.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), receiver.next())
                .await
                .is_err(),
            "concurrency {concurrency}: more than {in_flight} in flight"
        );
        gate.add_permits(3);
        for _ in in_flight..3 {
            types.push(receiver.next().await.event_type().to_owned());
        }
        types.sort();
        assert_eq!(
            types,
            [
                "charge.succeeded",
                "payment_intent.created",
                "payment_intent.succeeded"
            ]
        );
    }
}

#[tokio::test]
async fn only_the_enabled_event_types_are_delivered() {
    let mut receiver = Receiver::start(0).await;
    let app = TestSim::start_with(vec![receiver.url.clone()], |config| {
        config.webhook_events = Some(vec![
            "payment_intent.succeeded".to_owned(),
            "charge.refunded".to_owned(),
        ]);
    })
    .await;
    let first = app.paid_intent("1500", "pm_card_visa").await;
    let second = app.paid_intent("2500", "pm_card_visa").await;
    // Of created, charge.succeeded and succeeded for each, only succeeded arrives, in order.
    for pi in [&first, &second] {
        let delivered = receiver.next().await;
        assert_eq!(delivered.event_type(), "payment_intent.succeeded");
        assert_eq!(delivered.object_id(), pi["id"].as_str().unwrap());
    }
    // The others were emitted all the same.
    assert!(
        app.event_types(first["id"].as_str())
            .contains(&"payment_intent.created".to_owned())
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_until_it_accepts() {
    let mut receiver = Receiver::start(2).await;
    let app = TestSim::start(vec![receiver.url.clone()]).await;
    let mut feed = app.sim.subscribe_deliveries();

    app.post(
        "/v1/payment_intents",
        &[("amount", "1500"), ("currency", "usd")],
    )
    .await;

    let attempts = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    assert!(
        attempts
            .iter()
            .all(|a| a.event_id() == attempts[0].event_id())
    );
    let delivered = next_delivery(&mut feed, |d| d.outcome == DeliveryOutcome::Delivered).await;
    assert_eq!(delivered.attempt, 3);
    assert_eq!(delivered.status, Some(200));
    let log = app.sim.deliveries();
    let outcomes: Vec<_> = log
        .iter()
        .map(|d| (d.attempt, d.status, d.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, Some(500), DeliveryOutcome::Retrying),
            (2, Some(500), DeliveryOutcome::Retrying),
            (3, Some(200), DeliveryOutcome::Delivered),
        ]
    );
}

#[tokio::test]
async fn a_reorder_window_delivers_held_events_newest_first() {
    let mut receiver = Receiver::start(0).await;
    let app = TestSim::start(vec![receiver.url.clone()]).await;
    app.control("/controls", json!({ "webhook_reorder_window": 3 }))
        .await;

    app.paid_intent("1500", "pm_card_visa").await;

    let order = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    let types: Vec<&str> = order.iter().map(|r| r.event_type()).collect();
    assert_eq!(
        types,
        [
            "payment_intent.succeeded",
            "charge.succeeded",
            "payment_intent.created"
        ]
    );
}

#[tokio::test]
async fn dropped_events_are_logged_and_never_delivered() {
    let mut receiver = Receiver::start(0).await;
    let app = TestSim::start(vec![receiver.url.clone()]).await;
    let mut feed = app.sim.subscribe_deliveries();
    app.control("/controls", json!({ "webhook_drop_share": 1.0 }))
        .await;

    let dropped: Value = app
        .post(
            "/v1/payment_intents",
            &[("amount", "1500"), ("currency", "usd")],
        )
        .await
        .json()
        .await
        .unwrap();
    let record = next_delivery(&mut feed, |_| true).await;
    app.control("/controls", json!({ "webhook_drop_share": 0.0 }))
        .await;
    let kept: Value = app
        .post(
            "/v1/payment_intents",
            &[("amount", "1600"), ("currency", "usd")],
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(record.outcome, DeliveryOutcome::Dropped);
    let first = receiver.next().await;
    assert_eq!(first.object_id(), kept["id"].as_str().unwrap());
    assert_ne!(first.object_id(), dropped["id"].as_str().unwrap());
}

#[tokio::test]
async fn an_event_can_be_sent_again_on_demand() {
    let mut receiver = Receiver::start(0).await;
    let app = TestSim::start(vec![receiver.url.clone()]).await;
    app.post(
        "/v1/payment_intents",
        &[("amount", "1500"), ("currency", "usd")],
    )
    .await;
    let original = receiver.next().await;

    app.control(
        &format!("/events/{}/resend", original.event_id()),
        json!({}),
    )
    .await;

    let again = receiver.next().await;
    assert_eq!(again.body, original.body);
}

#[tokio::test]
async fn a_partial_reorder_window_is_released_by_a_flush() {
    let mut receiver = Receiver::start(0).await;
    let app = TestSim::start(vec![receiver.url.clone()]).await;
    app.control("/controls", json!({ "webhook_reorder_window": 10 }))
        .await;
    app.paid_intent("1500", "pm_card_visa").await;

    app.control("/webhooks/flush", json!({})).await;

    let order = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    let types: Vec<&str> = order.iter().map(|r| r.event_type()).collect();
    assert_eq!(
        types,
        [
            "payment_intent.succeeded",
            "charge.succeeded",
            "payment_intent.created"
        ]
    );
}

#[tokio::test]
async fn a_delay_holds_events_back_at_least_that_long() {
    let mut receiver = Receiver::start(0).await;
    let app = TestSim::start(vec![receiver.url.clone()]).await;
    app.control("/controls", json!({ "webhook_delay_ms": 150 }))
        .await;
    let started = std::time::Instant::now();

    app.post(
        "/v1/payment_intents",
        &[("amount", "1500"), ("currency", "usd")],
    )
    .await;

    receiver.next().await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn a_reset_forgets_objects_events_and_controls() {
    let app = TestSim::without_webhooks().await;
    let paid = app.paid_intent("1500", "pm_card_visa").await;
    app.control("/controls", json!({ "latency_ms": 5 })).await;

    app.control("/reset", json!({})).await;

    assert!(app.sim.events().is_empty());
    assert_eq!(app.sim.controls(), stripe_sim::Controls::default());
    let gone = app
        .get(&format!(
            "/v1/payment_intents/{}",
            paid["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(gone.status(), 404);
}
