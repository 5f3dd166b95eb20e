//! The simulator through async-stripe: proof that its objects and errors parse as Stripe's.

use std::collections::HashMap;

use stripe::{
    ApiErrorsCode, ApiErrorsType, Client, ClientBuilder, IdempotencyKey, RequestStrategy,
    StripeError, StripeRequest,
};
use stripe_core::PaymentIntentStatus;
use stripe_core::payment_intent::{
    CancelPaymentIntent, ConfirmPaymentIntent, CreatePaymentIntent,
    CreatePaymentIntentAutomaticPaymentMethods, RetrievePaymentIntent,
};
use stripe_core::refund::{CreateRefund, RetrieveRefund};
use stripe_types::Currency;

use crate::support::TestSim;

fn client(app: &TestSim) -> Client {
    ClientBuilder::new("sk_test_async_stripe")
        .url(app.base.as_str())
        .build()
        .unwrap()
}

fn idempotent(key: &str) -> RequestStrategy {
    RequestStrategy::Idempotent(IdempotencyKey::new(key).unwrap())
}

#[tokio::test]
async fn async_stripe_creates_and_retrieves_a_payment_intent() {
    let app = TestSim::without_webhooks().await;
    let client = client(&app);
    let create = CreatePaymentIntent::new(1500, Currency::USD)
        .metadata(HashMap::from([("order_id".to_owned(), "ord_1".to_owned())]))
        .payment_method("pm_card_visa")
        .confirm(true);

    let created = create
        .customize()
        .request_strategy(idempotent("ord_1-create"))
        .send(&client)
        .await
        .expect("the sim's PaymentIntent parses");
    let fetched = RetrievePaymentIntent::new(created.id.clone())
        .send(&client)
        .await
        .unwrap();
    let replayed = create
        .customize()
        .request_strategy(idempotent("ord_1-create"))
        .send(&client)
        .await
        .unwrap();

    assert_eq!(created.status, PaymentIntentStatus::Succeeded);
    assert_eq!(created.amount_received, 1500);
    assert_eq!(created.currency, Currency::USD);
    assert_eq!(created.metadata["order_id"], "ord_1");
    assert!(created.latest_charge.is_some());
    assert_eq!(fetched.id, created.id);
    assert_eq!(fetched.client_secret, created.client_secret);
    assert_eq!(replayed.id, created.id);
    assert_eq!(
        app.event_types(None)
            .iter()
            .filter(|t| *t == "payment_intent.created")
            .count(),
        1
    );
}

#[tokio::test]
async fn async_stripe_confirms_and_cancels() {
    let app = TestSim::without_webhooks().await;
    let client = client(&app);

    let open = CreatePaymentIntent::new(2500, Currency::EUR)
        .automatic_payment_methods(CreatePaymentIntentAutomaticPaymentMethods::new(true))
        .send(&client)
        .await
        .unwrap();
    let pending = ConfirmPaymentIntent::new(open.id.clone())
        .payment_method("pm_card_authenticationRequired")
        .send(&client)
        .await
        .unwrap();
    let canceled = CancelPaymentIntent::new(open.id.clone())
        .send(&client)
        .await
        .unwrap();

    assert_eq!(open.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert!(open.automatic_payment_methods.is_some_and(|a| a.enabled));
    assert_eq!(pending.status, PaymentIntentStatus::RequiresAction);
    assert!(pending.next_action.is_some());
    assert_eq!(canceled.status, PaymentIntentStatus::Canceled);
}

#[tokio::test]
async fn async_stripe_sees_a_decline_as_a_card_error() {
    let app = TestSim::without_webhooks().await;
    let client = client(&app);

    let result = CreatePaymentIntent::new(1500, Currency::USD)
        .payment_method("pm_card_chargeDeclined")
        .confirm(true)
        .send(&client)
        .await;

    let Err(StripeError::Stripe(error, status)) = result else {
        panic!("expected a Stripe error, got {result:?}");
    };
    assert_eq!(status, 402);
    assert_eq!(error.type_, ApiErrorsType::CardError);
    assert_eq!(error.code, Some(ApiErrorsCode::CardDeclined));
    assert_eq!(error.decline_code.as_deref(), Some("generic_decline"));
    let intent = error
        .payment_intent
        .expect("the error carries the PaymentIntent");
    assert_eq!(intent.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert!(intent.last_payment_error.is_some());
    assert!(error.payment_method.is_some());
}

#[tokio::test]
async fn async_stripe_refunds_a_payment() {
    let app = TestSim::without_webhooks().await;
    let client = client(&app);
    let paid = CreatePaymentIntent::new(1500, Currency::USD)
        .payment_method("pm_card_visa")
        .confirm(true)
        .send(&client)
        .await
        .unwrap();

    let refund = CreateRefund::new()
        .payment_intent(paid.id.as_str())
        .amount(500)
        .customize()
        .request_strategy(idempotent("refund-1"))
        .send(&client)
        .await
        .unwrap();
    let fetched = RetrieveRefund::new(refund.id.clone())
        .send(&client)
        .await
        .unwrap();
    let too_much = CreateRefund::new()
        .payment_intent(paid.id.as_str())
        .amount(5000)
        .send(&client)
        .await;

    assert_eq!(refund.amount, 500);
    assert_eq!(refund.status.as_deref(), Some("succeeded"));
    assert_eq!(fetched.id, refund.id);
    let Err(StripeError::Stripe(error, 400)) = too_much else {
        panic!("expected a 400, got {too_much:?}");
    };
    assert_eq!(error.code, Some(ApiErrorsCode::AmountTooLarge));
}
