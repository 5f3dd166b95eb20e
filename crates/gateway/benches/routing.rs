//! The routing decision's cost: classifying the path, reading the flag snapshot and
//! bucketing the key. It runs on every proxied request, so it should stay well under 100 ns.

use std::hint::black_box;

use axum::http::{HeaderMap, HeaderValue};
use criterion::{Criterion, criterion_group, criterion_main};
use gateway::{
    bucket,
    flags::snapshot::Snapshot,
    routing::{self, Side},
};

fn decisions(c: &mut Criterion) {
    let snapshot = Snapshot::uniform(true, 50);
    let mut customer = HeaderMap::new();
    customer.insert(
        "x-customer-id",
        HeaderValue::from_static("cus_4QpLy7d2Gx9m"),
    );
    customer.insert("accept", HeaderValue::from_static("application/json"));
    customer.insert("user-agent", HeaderValue::from_static("bench"));
    let mut visitor = HeaderMap::new();
    visitor.insert(
        "cookie",
        HeaderValue::from_static("session=abc; visitor_id=vis_0123456789abcdefghjkmnpqrs"),
    );

    c.bench_function("decide: new cart, keyed by customer", |b| {
        b.iter(|| {
            let route = routing::classify(black_box("/v1/carts"));
            routing::decide(black_box(&snapshot), &route, black_box(&customer))
        })
    });
    c.bench_function("decide: new cart, keyed by visitor cookie", |b| {
        b.iter(|| {
            let route = routing::classify(black_box("/v1/carts"));
            routing::decide(black_box(&snapshot), &route, black_box(&visitor))
        })
    });
    c.bench_function("decide: cart id in the path", |b| {
        b.iter(|| {
            let route =
                routing::classify(black_box("/v1/carts/crt_0123456789abcdefghjkmnpqrs/items"));
            routing::decide(black_box(&snapshot), &route, black_box(&customer))
        })
    });
    c.bench_function("decide: legacy order id in the path", |b| {
        b.iter(|| {
            let route = routing::classify(black_box("/v1/orders/10023456/events"));
            let decision = routing::decide(black_box(&snapshot), &route, black_box(&customer));
            decision.side == Side::New
        })
    });
    c.bench_function("bucket: murmur3 of a 30-byte key", |b| {
        b.iter(|| bucket::bucket(black_box("crt_0123456789abcdefghjkmnpqrs")))
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);
