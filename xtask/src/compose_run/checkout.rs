//! One storefront checkout through the compose gateway, from the root namespace by the
//! gateway's address and compose port: the new services' flags ramped to 100 % through the
//! admin API if they are not (a stack that demonstrates the migration starts them at 0 %
//! with a legacy service), a cart with a product of the seeded catalog, an order paid with
//! Stripe's test card (confirmed server-side at stripe-sim, whose signed webhook reaches
//! payments by its compose hostname), followed until it is `confirmed`.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use hyper::Method;
use serde_json::{Value, json};

use super::plan::{Kind, Plan};
use crate::{
    chaos::http::{self, Answer, Body},
    seed,
};

/// How long an order may take from accepted to a final state.
const CONFIRM_WITHIN: Duration = Duration::from_secs(60);
/// The flags of the route groups the checkout goes through.
const GROUPS: &[&str] = &["cart", "orders", "payments"];
const QUANTITY: i64 = 2;

/// Runs the checkout; an error says which step failed and what the platform answered.
pub async fn run(plan: &Plan, addresses: &BTreeMap<String, Ipv4Addr>) -> anyhow::Result<()> {
    let gateway = plan
        .services
        .iter()
        .find(|s| matches!(&s.kind, Kind::App { binary, .. } if binary == "gateway"))
        .context("no compose service runs the gateway")?;
    let address = addresses[&gateway.name];
    let port = |key: &str| {
        gateway
            .env
            .get(key)
            .and_then(|a| a.rsplit_once(':'))
            .map(|(_, port)| port.to_owned())
            .with_context(|| format!("{}: {key} is not set", gateway.name))
    };
    let public = format!("{address}:{}", port("LISTEN_ADDR")?);
    let admin = format!("{address}:{}", port("ADMIN_LISTEN_ADDR")?);
    let token = admin_token(&gateway.env).context("the gateway has no admin token")?;
    println!(
        "compose-run: checkout through {} at {public} (admin API {admin})",
        gateway.name
    );

    ramp_flags(&admin, &format!("Bearer {token}")).await?;

    let cart = expect(
        "POST /v1/carts",
        201,
        call(
            &public,
            Method::POST,
            "/v1/carts",
            &[],
            json!({"currency": "USD"}),
        )
        .await,
    )?;
    let cart_id = cart["id"]
        .as_str()
        .context("the cart has no id")?
        .to_owned();
    println!("  POST /v1/carts -> 201 {cart_id}");

    let (sku, _, unit_price) = seed::PRODUCTS[0];
    let path = format!("/v1/carts/{cart_id}/items");
    let body = json!({"sku": sku, "quantity": QUANTITY});
    let cart = expect(
        &format!("POST {path}"),
        200,
        call(&public, Method::POST, &path, &[], body).await,
    )?;
    let subtotal = cart["subtotal"].as_i64();
    if subtotal != Some(unit_price * QUANTITY) {
        bail!(
            "the cart's subtotal is {subtotal:?}, not {}",
            unit_price * QUANTITY
        );
    }
    println!(
        "  POST {path} {sku} x {QUANTITY} -> 200, subtotal {}",
        unit_price * QUANTITY
    );

    let key = format!("compose-run-{}-{}", std::process::id(), nanos());
    let body = json!({
        "cart_id": cart_id,
        "email": "shopper@example.com",
        "payment_method": "pm_card_visa",
    });
    let order = expect(
        "POST /v1/orders",
        202,
        call(
            &public,
            Method::POST,
            "/v1/orders",
            &[("idempotency-key", &key)],
            body,
        )
        .await,
    )?;
    let order_id = order["id"]
        .as_str()
        .context("the order has no id")?
        .to_owned();
    println!(
        "  POST /v1/orders (Idempotency-Key {key}, pm_card_visa) -> 202 {order_id} {}",
        order["status"].as_str().unwrap_or("?")
    );

    let order = follow(&public, &order_id).await?;
    if order["total"].as_i64() != Some(unit_price * QUANTITY) {
        bail!(
            "the confirmed order's total is {}, not {}",
            order["total"],
            unit_price * QUANTITY
        );
    }
    println!(
        "compose-run: checkout confirmed through the compose hostnames: order {order_id}, total {} {}, payment {}",
        order["total"],
        order["currency"].as_str().unwrap_or("?"),
        order["payment"]["status"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Sets each route group's flag to enabled at 100 % unless it already is.
async fn ramp_flags(admin: &str, auth: &str) -> anyhow::Result<()> {
    let headers = [("authorization", auth)];
    let answer = http::send(admin, Method::GET, "/admin/flags", &headers, Body::None).await;
    let flags = expect("GET /admin/flags", 200, answer)?;
    for group in GROUPS {
        let flag = flags["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["name"] == *group)
            .with_context(|| format!("the gateway has no {group} flag"))?;
        let (enabled, percent) = (flag["enabled"] == true, flag["rollout_percent"].as_i64());
        if enabled && percent == Some(100) {
            println!("  flag {group}: enabled at 100 %");
            continue;
        }
        let path = format!("/admin/flags/{group}");
        let body = json!({
            "enabled": true,
            "rollout_percent": 100,
            "reason": "compose-run: one checkout through the new services",
        });
        let answer = http::send(admin, Method::PUT, &path, &headers, Body::Json(body)).await;
        expect(&format!("PUT {path}"), 200, answer)?;
        println!(
            "  flag {group}: {} at {} % -> enabled at 100 % (PUT {path})",
            if enabled { "enabled" } else { "disabled" },
            percent.unwrap_or_default()
        );
    }
    Ok(())
}

/// Polls the order through the gateway until it is final, printing each state it passes.
async fn follow(public: &str, order_id: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/orders/{order_id}");
    let started = Instant::now();
    let mut seen = String::new();
    while started.elapsed() < CONFIRM_WITHIN {
        let answer = http::send(public, Method::GET, &path, &[], Body::None).await;
        let order = expect(&format!("GET {path}"), 200, answer)?;
        let status = order["status"].as_str().unwrap_or("?").to_owned();
        if status != seen {
            println!(
                "  GET {path} -> {status} ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            seen = status;
        }
        match seen.as_str() {
            "confirmed" => return Ok(order),
            "failed" | "cancelled" => bail!(
                "the order ended {seen}: {}",
                order["failure_reason"]
                    .as_str()
                    .unwrap_or("no reason given")
            ),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    bail!("the order is still {seen} after {CONFIRM_WITHIN:?}")
}

async fn call(
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Option<Answer> {
    http::send(addr, method, path, headers, Body::Json(body)).await
}

/// The answer's JSON when its status is `status`; otherwise an error naming the step.
fn expect(what: &str, status: u16, answer: Option<Answer>) -> anyhow::Result<Value> {
    match answer {
        Some(a) if a.status == status => Ok(a.json),
        Some(a) => bail!("{what} answered {} {}", a.status, a.json),
        None => bail!("{what}: no answer"),
    }
}

/// The admin token the gateway accepts: `ADMIN_TOKEN`, else the first of `ADMIN_TOKENS`
/// (`actor:token,…`).
fn admin_token(env: &BTreeMap<String, String>) -> Option<String> {
    env.get("ADMIN_TOKEN")
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.split(',').next().unwrap_or_default().trim().to_owned())
        .or_else(|| {
            let first = env.get("ADMIN_TOKENS")?.split(',').next()?.to_owned();
            Some(first.split_once(':')?.1.trim().to_owned())
        })
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_admin_token_comes_from_either_variable() {
        assert_eq!(
            admin_token(&env(&[("ADMIN_TOKEN", "t1,t0")])).as_deref(),
            Some("t1")
        );
        assert_eq!(
            admin_token(&env(&[("ADMIN_TOKENS", "alice:ta,bob:tb")])).as_deref(),
            Some("ta")
        );
        assert_eq!(admin_token(&env(&[("ADMIN_TOKEN", " ")])), None);
    }
}
