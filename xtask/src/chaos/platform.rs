//! Running the platform for a chaos run: readiness, stock set through the admin API, a
//! watch for exits nobody asked for, the settle period, and what the logs and kept carts
//! say at the end.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use hyper::Method;
use serde_json::json;
use sqlx::PgPool;

use super::{
    http::{self, Body},
    procs::Procs,
    snapshot,
    traffic::{CheckedCart, KeptCart},
};

/// Waits until the process at `url` answers `/readyz` (or `/healthz`), or errs after `within`.
pub async fn wait_ready(label: &str, url: &str, within: Duration) -> anyhow::Result<()> {
    let addr = url.trim_start_matches("http://");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match crate::bench::get_status(addr, "/readyz").await {
            Some(200) => return Ok(()),
            Some(404) if crate::bench::get_status(addr, "/healthz").await == Some(200) => {
                return Ok(());
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{label} did not become ready at {url}")
}

/// Sets each product's stock through orders' admin API, as an operator would; answers the
/// stock each SKU starts with.
pub async fn set_stock(
    orders_api: &str,
    admin_token: &str,
    products: &[(String, i64)],
    on_hand: impl Fn(&str) -> i64,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let auth = format!("Bearer {admin_token}");
    let mut initial = BTreeMap::new();
    for (sku, _) in products {
        let units = on_hand(sku);
        let set = http::send(
            orders_api,
            Method::PUT,
            &format!("/admin/inventory/{sku}"),
            &[("authorization", &auth)],
            Body::Json(json!({ "on_hand": units })),
        )
        .await;
        if set.as_ref().is_none_or(|a| a.status != 200) {
            bail!(
                "setting the stock of {sku} answered {:?}",
                set.map(|a| (a.status, a.json))
            );
        }
        initial.insert(sku.clone(), units);
    }
    Ok(initial)
}

/// Restarts any process that exits without the nemesis asking, recording each exit as
/// `(label, run-clock second, status)`, until `watching` is cleared.
pub async fn watch(
    procs: Arc<Mutex<Procs>>,
    exits: Arc<Mutex<Vec<(String, f64, String)>>>,
    watching: Arc<AtomicBool>,
    started: Instant,
) {
    while watching.load(Ordering::SeqCst) {
        {
            let mut procs = procs.lock().expect("procs");
            for p in &mut procs.all {
                if let Some(status) = p.exited() {
                    exits.lock().expect("exits").push((
                        p.label.clone(),
                        started.elapsed().as_secs_f64(),
                        status,
                    ));
                    let _ = p.spawn();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls until every order is final and both job queues are idle for three checks in a
/// row, or `bound` passes; answers whether it went quiet, how long it took, and the last
/// `(open orders, busy jobs)`.
pub async fn settle(pool: &PgPool, bound: Duration) -> (bool, Duration, (i64, i64)) {
    let started = Instant::now();
    let (mut quiet, mut last) = (0, (0, 0));
    while started.elapsed() < bound && quiet < 3 {
        last = snapshot::progress(pool).await.unwrap_or((-1, -1));
        quiet = if last == (0, 0) { quiet + 1 } else { 0 };
        if quiet < 3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    (quiet >= 3, started.elapsed(), last)
}

/// The kept carts with their lines now, read from the cart service directly.
pub async fn read_carts(cart_addr: &str, kept: Vec<KeptCart>) -> Vec<CheckedCart> {
    let mut checked = Vec::new();
    for cart in kept {
        let answer = http::send(
            cart_addr,
            Method::GET,
            &format!("/v1/carts/{}", cart.id),
            &[],
            Body::None,
        )
        .await;
        let lines = answer.filter(|a| a.status == 200).map(|a| {
            let mut lines: Vec<(String, i64)> = a.json["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| Some((i["sku"].as_str()?.to_owned(), i["quantity"].as_i64()?)))
                .collect();
            lines.sort();
            lines
        });
        checked.push((cart, lines));
    }
    checked
}

/// Every line telling of a panic in the processes' logs, as `(label, line)`.
pub fn panics(logs: &[(String, PathBuf)]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (label, path) in logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("panicked")) {
            found.push((label.clone(), line.chars().take(300).collect()));
        }
    }
    found
}
