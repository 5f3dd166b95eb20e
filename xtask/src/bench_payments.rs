//! `cargo xtask bench payments`: verified Stripe webhook events per second through
//! `POST /v1/webhooks/stripe`. Every request is a distinct `payment_intent.succeeded` event
//! signed the way Stripe signs (`Stripe-Signature: t=…,v1=HMAC-SHA256`), so each one is
//! verified, parsed and durably recorded with its processing job before the 2xx. Two runs:
//! the API alone (`payments serve`), then the whole process with its worker applying the
//! events as they arrive. Release build, load generator on the same machine.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::ensure;
use hyper::{Method, body::Bytes};
use sqlx::PgPool;

use crate::{
    bench::{Call, load, setting},
    services::{self, Profile},
    stack::{Stack, free_port},
};

/// The signing secret the service is given and the load generator signs with.
const SECRET: &str = "whsec_bench";

/// Runs the webhook benchmark.
pub async fn payments() -> anyhow::Result<()> {
    let seconds = setting("BENCH_SECONDS", 10)?;
    let conns = setting("BENCH_CONNECTIONS", 64)? as usize;
    // The vector stripe-sim's and payments' own tests use (computed with Python's hmac).
    ensure!(
        signature_header("whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#)
            == "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925",
        "the load generator's HMAC-SHA256 is wrong"
    );
    let stack = Stack::ensure().await?;
    services::build_only(Profile::Release, &["payments"])?;
    let pool = common::db::connect(&stack.database_url, 2).await?;
    let run = format!("{}x{}", std::process::id(), unix_now());
    println!(
        "\npayments webhook intake, release build, {conns} connections, {seconds} s per scenario, load generator on the same machine\n"
    );

    let scenarios: [(&str, &[&str]); 2] = [
        ("POST /v1/webhooks/stripe (API only)", &["serve"]),
        ("POST /v1/webhooks/stripe (+ worker)", &[]),
    ];
    for (i, (name, role)) in scenarios.into_iter().enumerate() {
        let port = free_port()?;
        let service = services::start_role(
            &stack,
            Profile::Release,
            "payments",
            role,
            port,
            &[
                ("STRIPE_WEBHOOK_SECRETS", SECRET),
                ("DB_MAX_CONNECTIONS", "32"),
                ("RUST_LOG", "warn"),
            ],
        )?;
        services::wait_ready(&service).await?;
        let addr = format!("127.0.0.1:{port}");
        load(
            "(warm-up)",
            &addr,
            conns,
            Duration::from_secs(2),
            events(format!("{run}w{i}")),
        )
        .await?;
        let tag = format!("{run}s{i}");
        let report = load(
            name,
            &addr,
            conns,
            Duration::from_secs(seconds),
            events(tag.clone()),
        )
        .await?;
        report.print();
        let recorded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM payments.events WHERE id LIKE $1")
                .bind(format!("evt_bench_{tag}_%"))
                .fetch_one(&pool)
                .await?;
        println!(
            "{:<34} {:>9.0} verified events/s  ({recorded} recorded, {} refused)",
            "",
            report.ok as f64 / report.elapsed.as_secs_f64(),
            report.failed
        );
        drop(service);
        forget(&pool, &run).await?;
    }
    Ok(())
}

/// User `u`'s `n`-th request: a fresh event, signed now.
fn events(tag: String) -> impl Fn(usize, u64) -> Call + Send + Sync + 'static {
    let tag: Arc<str> = tag.into();
    move |user, n| {
        let body = event(
            &format!("evt_bench_{tag}_{user}_{n}"),
            &format!("pi_bench_{tag}_{user}_{n}"),
        );
        let signature = signature_header(SECRET, unix_now(), body.as_bytes());
        // Built whole: the bytes sent must be the bytes signed.
        Call {
            method: Method::POST,
            path: "/v1/webhooks/stripe".into(),
            body: Some(Bytes::from(body)),
            headers: vec![("stripe-signature", signature)],
        }
    }
}

/// A `payment_intent.succeeded` event about PaymentIntent `pi`, shaped and sized like
/// Stripe's (about 1.3 KB). It names no order, so the worker settles it as "not ours".
fn event(id: &str, pi: &str) -> String {
    let created = unix_now();
    format!(
        r#"{{"id":"{id}","object":"event","api_version":"2026-09-30.endive","created":{created},"data":{{"object":{{"id":"{pi}","object":"payment_intent","amount":1999,"amount_capturable":0,"amount_details":{{"tip":{{}}}},"amount_received":1999,"application":null,"application_fee_amount":null,"automatic_payment_methods":{{"allow_redirects":"never","enabled":true}},"canceled_at":null,"cancellation_reason":null,"capture_method":"automatic","client_secret":"{pi}_secret_benchbenchbenchbenchbench","confirmation_method":"automatic","created":{created},"currency":"usd","customer":null,"description":null,"last_payment_error":null,"latest_charge":"ch_bench","livemode":false,"metadata":{{}},"next_action":null,"on_behalf_of":null,"payment_method":"pm_bench","payment_method_configuration_details":null,"payment_method_options":{{"card":{{"installments":null,"mandate_options":null,"network":null,"request_three_d_secure":"automatic"}}}},"payment_method_types":["card"],"processing":null,"receipt_email":null,"review":null,"setup_future_usage":null,"shipping":null,"source":null,"statement_descriptor":null,"statement_descriptor_suffix":null,"status":"succeeded","transfer_data":null,"transfer_group":null}}}},"livemode":false,"pending_webhooks":1,"request":{{"id":"req_bench","idempotency_key":"pi-bench"}},"type":"payment_intent.succeeded"}}"#
    )
}

/// Removes what this run recorded.
async fn forget(pool: &PgPool, run: &str) -> anyhow::Result<()> {
    let pattern = format!("evt_bench_{run}%");
    sqlx::query(
        "DELETE FROM payments.jobs WHERE kind LIKE 'process_event%' AND payload::text LIKE $1",
    )
    .bind(format!("%{pattern}"))
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM payments.events WHERE id LIKE $1")
        .bind(&pattern)
        .execute(pool)
        .await?;
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "{t}.{payload}")>`, as Stripe signs.
fn signature_header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let t = timestamp.to_string();
    let mac = hmac_sha256(secret.as_bytes(), &[t.as_bytes(), b".", payload]);
    let mut header = format!("t={t},v1=");
    for byte in mac {
        header.push_str(&format!("{byte:02x}"));
    }
    header
}

/// HMAC (RFC 2104) over the concatenation of `parts`. xtask carries no crypto crate for this
/// one use; the result is checked against a known signature at start.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(&[key]));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let (inner_pad, outer_pad) = (pad(0x36), pad(0x5c));
    let mut inner = vec![&inner_pad[..]];
    inner.extend_from_slice(parts);
    let inner = Sha256::digest(&inner);
    Sha256::digest(&[&outer_pad, &inner])
}

/// SHA-256 (FIPS 180-4).
struct Sha256 {
    state: [u32; 8],
    block: [u8; 64],
    filled: usize,
    length: u64,
}

const ROUND: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

impl Sha256 {
    fn digest(parts: &[&[u8]]) -> [u8; 32] {
        let mut hash = Sha256 {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            filled: 0,
            length: 0,
        };
        for part in parts {
            hash.update(part);
        }
        hash.finish()
    }

    fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        while !data.is_empty() {
            let take = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == 64 {
                self.compress();
                self.filled = 0;
            }
        }
    }

    fn finish(mut self) -> [u8; 32] {
        let bits = self.length * 8;
        self.update(&[0x80]);
        while self.filled != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(&mut self) {
        let mut w = [0u32; 64];
        for (i, chunk) in self.block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choice = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(choice)
                .wrapping_add(ROUND[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            (h, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (word, add) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *word = word.wrapping_add(add);
        }
    }
}
