//! The storefront's flows, each one shopper's path through a checkout: good cards, declines,
//! Stripe.js payments, a decline then another card, 3-D Secure done and abandoned, a late
//! payer, double and concurrent submits, a key reused with another body, a hot SKU, malformed
//! requests, and carts kept without checkout.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use super::{
    http::Body,
    rng::Rng,
    traffic::{Checkout, KeptCart, Shop, is_final},
};

/// A shopper's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flow {
    /// `pm_card_visa` at checkout.
    Good,
    /// `pm_card_chargeDeclined` at checkout.
    Declined,
    /// No payment method; confirmed with Stripe.js.
    StripeJs,
    /// Stripe.js: a declined card, then a good one.
    DeclinedThenPaid,
    /// 3-D Secure, answered.
    ThreeDsDone,
    /// 3-D Secure, never answered.
    ThreeDsAbandoned,
    /// Stripe.js, paid only after the order was cancelled for its payment timeout.
    LatePayer,
    /// The same key and body twice in a row.
    DoubleSubmit,
    /// The same key and body twice at once.
    ConcurrentSubmit,
    /// The same key with another body (refused with 422).
    KeyReuse,
    /// A good card for the hot SKU, three shoppers at once.
    HotSku,
    /// A malformed request (a 4xx problem+json is expected).
    Malformed,
    /// A cart written and kept, never checked out.
    KeptCart,
}

/// Each flow's weight in the mix.
const MIX: &[(Flow, u64)] = &[
    (Flow::Good, 18),
    (Flow::Declined, 7),
    (Flow::StripeJs, 8),
    (Flow::DeclinedThenPaid, 6),
    (Flow::ThreeDsDone, 6),
    (Flow::ThreeDsAbandoned, 4),
    (Flow::LatePayer, 3),
    (Flow::DoubleSubmit, 6),
    (Flow::ConcurrentSubmit, 6),
    (Flow::KeyReuse, 4),
    (Flow::HotSku, 6),
    (Flow::Malformed, 8),
    (Flow::KeptCart, 6),
];

impl Flow {
    /// A flow drawn from the mix.
    pub fn pick(rng: &mut Rng) -> Self {
        let total: u64 = MIX.iter().map(|(_, w)| w).sum();
        let mut n = rng.below(total);
        for (flow, weight) in MIX {
            if n < *weight {
                return *flow;
            }
            n -= weight;
        }
        Flow::Good
    }

    /// The payment method given at checkout.
    fn payment_method(self) -> Option<&'static str> {
        match self {
            Self::Declined => Some("pm_card_chargeDeclined"),
            Self::StripeJs | Self::DeclinedThenPaid | Self::LatePayer => None,
            Self::ThreeDsDone | Self::ThreeDsAbandoned => Some("pm_card_threeDSecure2Required"),
            _ => Some("pm_card_visa"),
        }
    }
}

/// One shopper: flows drawn from `rng` until the load ends.
pub async fn shopper(shop: &Shop, mut rng: Rng, who: usize) {
    let mut n = 0;
    while std::time::Instant::now() < shop.load_end {
        let flow = Flow::pick(&mut rng);
        let key = format!("chaos-{who}-{n}-{:016x}", rng.next());
        n += 1;
        match flow {
            Flow::Malformed => malformed(shop, &mut rng, &key).await,
            Flow::KeptCart => kept_cart(shop, &mut rng).await,
            Flow::HotSku => {
                // Three shoppers at once for the last units: the race the stock must survive.
                let (mut a, mut b, mut c) = (rng.fork(), rng.fork(), rng.fork());
                let burst = tokio::join!(
                    checkout(shop, &mut a, flow, format!("{key}-a"), who),
                    checkout(shop, &mut b, flow, format!("{key}-b"), who),
                    checkout(shop, &mut c, flow, format!("{key}-c"), who),
                );
                shop.checkouts
                    .lock()
                    .expect("checkouts")
                    .extend([burst.0, burst.1, burst.2]);
            }
            _ => {
                let checkout = checkout(shop, &mut rng, flow, key, who).await;
                shop.checkouts.lock().expect("checkouts").push(checkout);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
    }
}

fn lines(shop: &Shop, rng: &mut Rng, flow: Flow) -> Vec<(String, i64)> {
    if flow == Flow::HotSku {
        return vec![(shop.hot.clone(), 1 + rng.below(2) as i64)];
    }
    let mut lines = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let (sku, _) = &shop.products[rng.below(shop.products.len() as u64) as usize];
        if lines.iter().all(|(s, _)| s != sku) {
            lines.push((sku.clone(), 1 + rng.below(3) as i64));
        }
    }
    lines
}

async fn checkout(shop: &Shop, rng: &mut Rng, flow: Flow, key: String, who: usize) -> Checkout {
    let mut checkout = Checkout::new(flow, key);
    let Some((cart, _)) = shop.cart(&lines(shop, rng, flow)).await else {
        checkout.note = Some("no cart (the cart service did not answer)".into());
        return checkout;
    };
    // An address per checkout: a shopper's abandoned checkouts must not reach the cap on
    // orders waiting for payment, which would end the flows this run drives early.
    let email = format!("shopper{who}.{}@example.com", checkout.key);
    let mut body = json!({ "cart_id": cart, "email": email });
    if let Some(pm) = flow.payment_method() {
        body["payment_method"] = json!(pm);
    }
    let order = match flow {
        Flow::ConcurrentSubmit => {
            let mut twin = checkout.clone();
            let (a, b) = tokio::join!(
                shop.submit(&mut checkout, &body),
                shop.submit(&mut twin, &body)
            );
            checkout.answers.extend(twin.answers);
            if a.is_some() && b.is_some() && a != b {
                checkout
                    .findings
                    .push(format!("concurrent submits were given {a:?} and {b:?}"));
            }
            a.or(b)
        }
        _ => shop.submit(&mut checkout, &body).await,
    };
    checkout.order = order.clone();
    let Some(order) = order else {
        return checkout;
    };
    match flow {
        Flow::DoubleSubmit => {
            let again = shop.submit(&mut checkout, &body).await;
            if again.as_ref() != Some(&order) {
                checkout
                    .findings
                    .push(format!("the replay answered {again:?}, not {order}"));
            }
        }
        Flow::KeyReuse => {
            let mut other = body.clone();
            other["email"] = json!("someone.else@example.com");
            let answer = shop
                .call_retrying(
                    Method::POST,
                    "/v1/orders",
                    &[("idempotency-key", &checkout.key)],
                    || Body::Json(other.clone()),
                )
                .await;
            match answer {
                Some(a) if a.status == 422 && a.problem => {}
                Some(a) => checkout.findings.push(format!(
                    "the key reused with another body answered {} (problem+json: {}), not 422",
                    a.status, a.problem
                )),
                None => checkout
                    .findings
                    .push("the key reused with another body got no answer".into()),
            }
        }
        Flow::StripeJs => {
            if let Some(pi) = shop.intent_of(&order).await {
                let status = shop
                    .confirm(&pi, "pm_card_visa", &format!("{order}-visa"))
                    .await;
                checkout.note = Some(format!("Stripe.js confirm answered {status:?}"));
            }
        }
        Flow::DeclinedThenPaid => {
            if let Some(pi) = shop.intent_of(&order).await {
                let first = shop
                    .confirm(&pi, "pm_card_chargeDeclined", &format!("{order}-declined"))
                    .await;
                tokio::time::sleep(Duration::from_millis(300 + rng.below(1500))).await;
                let second = shop
                    .confirm(&pi, "pm_card_visa", &format!("{order}-visa"))
                    .await;
                checkout.note = Some(format!(
                    "declined card answered {first:?}, second card {second:?}"
                ));
            }
        }
        Flow::ThreeDsDone => {
            let status = shop.authenticate(&order).await;
            checkout.note = Some(format!("3-D Secure answered {status:?}"));
        }
        Flow::LatePayer => {
            if let Some(pi) = shop.intent_of(&order).await {
                let within = shop.payment_timeout + Duration::from_secs(60);
                let closed = shop.wait_order(&order, within, is_final).await;
                let status = shop
                    .confirm(&pi, "pm_card_visa", &format!("{order}-late"))
                    .await;
                checkout.note = Some(format!(
                    "paid after the order was {}: stripe-sim answered {status:?}",
                    closed
                        .as_ref()
                        .and_then(|o| o["status"].as_str())
                        .unwrap_or("(still open)")
                ));
            }
        }
        _ => {}
    }
    checkout
}

/// One malformed request; the answer is judged by the invariants from the recorded samples.
async fn malformed(shop: &Shop, rng: &mut Rng, key: &str) {
    let json = |v: Value| Body::Json(v);
    let raw = |s: &str| Body::Raw("application/json", s.to_owned());
    let k: &[(&str, &str)] = &[("idempotency-key", key)];
    let (method, path, headers, body): (Method, String, &[(&str, &str)], Body) = match rng.below(7)
    {
        0 => (Method::POST, "/v1/orders".into(), k, raw("{\"cart_id\":")),
        1 => (
            Method::POST,
            "/v1/orders".into(),
            &[],
            json(json!({ "cart_id": "crt_x", "email": "a@example.com" })),
        ),
        2 => (
            Method::POST,
            "/v1/orders".into(),
            k,
            json(json!({ "cart_id": "crt_AAAAAAAAAAAAAAAAAAAAAAAA", "email": "a@example.com" })),
        ),
        3 => (
            Method::POST,
            "/v1/orders".into(),
            k,
            json(json!({ "cart_id": 7, "email": "not an email" })),
        ),
        4 => (
            Method::GET,
            "/v1/orders/ord_AAAAAAAAAAAAAAAAAAAAAAAA".into(),
            &[],
            Body::None,
        ),
        5 => (
            Method::POST,
            "/v1/carts".into(),
            &[],
            json(json!({ "currency": "usd dollars" })),
        ),
        _ => {
            let Some((cart, _)) = shop.cart(&[]).await else {
                return;
            };
            (
                Method::PUT,
                format!("/v1/carts/{cart}/items/NO-SUCH-SKU"),
                &[],
                json(json!({ "quantity": 1 })),
            )
        }
    };
    shop.call(method, &path, headers, body, true).await;
}

/// A cart written and left: its last acknowledged lines are checked at the end.
async fn kept_cart(shop: &Shop, rng: &mut Rng) {
    let lines = lines(shop, rng, Flow::Good);
    if let Some((id, last)) = shop.cart(&lines).await {
        let mut lines: Vec<(String, i64)> = last["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| Some((i["sku"].as_str()?.to_owned(), i["quantity"].as_i64()?)))
            .collect();
        lines.sort();
        shop.kept_carts.lock().expect("carts").push(KeptCart {
            id,
            lines,
            acked: shop.client.now(),
        });
    }
}
