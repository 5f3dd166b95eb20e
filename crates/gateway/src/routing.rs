//! The routing decision: which route group a path belongs to, and whether this request goes
//! to the new service or to legacy. It reads one flag snapshot and the request's path and
//! headers, nothing else. A path carrying an id minted by a new service (`crt_`, `ord_`,
//! `pay_`) always goes to the new service, and one carrying any other id always goes to
//! legacy, so no rollout or rollback strands either side's data; the rollout only decides
//! where new carts and orders are created, by sticky bucket.

use axum::http::{HeaderMap, HeaderName, header};

use crate::{bucket, flags::snapshot::Snapshot, group::Group};

/// Prefixes of the ids the new services mint (see `common::id`).
pub const NEW_SERVICE_ID_PREFIXES: [&str; 3] = ["crt_", "ord_", "pay_"];

/// The header naming a logged-in customer, the preferred bucketing key.
pub const CUSTOMER_HEADER: HeaderName = HeaderName::from_static("x-customer-id");

/// The cookie the gateway sets to bucket anonymous visitors.
pub const VISITOR_COOKIE: &str = "visitor_id";

/// What a path is, as far as routing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Not in any group: always legacy.
    Legacy,
    /// In a group, with the id segment after the collection when there is one.
    Group {
        /// The group.
        group: Group,
        /// `{id}` of `/v1/carts/{id}/...`.
        id: Option<&'a str>,
    },
    /// `/v1/webhooks/stripe`: routed by the body (see `webhook`).
    StripeWebhook,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The new service of the request's group.
    New,
    /// The legacy monolith.
    Legacy,
}

impl Side {
    /// The metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Side::New => "new",
            Side::Legacy => "legacy",
        }
    }
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The group, when the path is in one.
    pub group: Option<Group>,
    /// Where it goes.
    pub side: Side,
    /// A visitor id to set as a cookie: the request carried neither a visitor cookie nor a
    /// customer id. When the path has no id either, it is the key the request was bucketed by.
    pub new_visitor: Option<String>,
}

/// The group of `path`.
pub fn classify(path: &str) -> Route<'_> {
    if path == "/v1/webhooks/stripe" {
        return Route::StripeWebhook;
    }
    for (collection, group) in [("/v1/carts", Group::Cart), ("/v1/orders", Group::Orders)] {
        if let Some(rest) = path.strip_prefix(collection) {
            if rest.is_empty() {
                return Route::Group { group, id: None };
            }
            if let Some(rest) = rest.strip_prefix('/') {
                let id = rest.split('/').next().filter(|s| !s.is_empty());
                return Route::Group { group, id };
            }
        }
    }
    Route::Legacy
}

/// Whether `id` was minted by a new service.
pub fn is_new_service_id(id: &str) -> bool {
    NEW_SERVICE_ID_PREFIXES.iter().any(|p| id.starts_with(p))
}

/// Decides where a request on `route` goes (`StripeWebhook` is decided by
/// `decide_by_key` once the body is read).
pub fn decide(snapshot: &Snapshot, route: &Route<'_>, headers: &HeaderMap) -> Decision {
    let customer = header_value(headers, &CUSTOMER_HEADER);
    // A customer id outranks the cookie, so the cookie is only read without one.
    let visitor = customer
        .is_none()
        .then(|| visitor_cookie(headers))
        .flatten();
    let new_visitor = (customer.is_none() && visitor.is_none()).then(fresh_visitor_id);
    let (group, id) = match *route {
        Route::Group { group, id } => (group, id),
        Route::Legacy | Route::StripeWebhook => {
            return Decision {
                group: None,
                side: Side::Legacy,
                new_visitor,
            };
        }
    };
    let key = customer
        .or(visitor)
        .or(new_visitor.as_deref())
        .unwrap_or_default();
    // A path naming a cart or order no new service minted can be served only by legacy,
    // where it lives: the rollout moves where new ones are created, never the old ones.
    let side = match id {
        Some(id) if !is_new_service_id(id) => Side::Legacy,
        _ => decide_by_key(snapshot, group, id, key),
    };
    Decision {
        group: Some(group),
        side,
        new_visitor,
    }
}

/// The side for `group` given an id from the request (path or body) and a bucketing key.
pub fn decide_by_key(snapshot: &Snapshot, group: Group, id: Option<&str>, key: &str) -> Side {
    if id.is_some_and(is_new_service_id) {
        return Side::New;
    }
    let flag = snapshot.get(group);
    if flag.enabled && bucket::is_new_side(key, flag.rollout_percent) {
        Side::New
    } else {
        Side::Legacy
    }
}

fn header_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn visitor_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|cookies| cookie_value(cookies.as_bytes(), VISITOR_COOKIE.as_bytes()))
}

/// The value of cookie `name` in a `Cookie` header (`a=1; name=value; b=2`). It works on
/// bytes and checks only the value's text: this runs on every anonymous request.
fn cookie_value<'a>(cookies: &'a [u8], name: &[u8]) -> Option<&'a str> {
    cookies.split(|&b| b == b';').find_map(|pair| {
        let start = pair.iter().position(|&b| b != b' ')?;
        let value = pair[start..].strip_prefix(name)?.strip_prefix(b"=")?;
        let end = value.iter().rposition(|&b| b != b' ')? + 1;
        std::str::from_utf8(&value[..end]).ok()
    })
}

fn fresh_visitor_id() -> String {
    common::id::new_id("vis")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_visitor_cookie_is_found_among_others_and_only_by_its_whole_name() {
        let cases = [
            ("visitor_id=v1", Some("v1")),
            ("a=1; visitor_id=v2; b=2", Some("v2")),
            ("a=1;visitor_id=v3", Some("v3")),
            ("old_visitor_id=x; visitor_id=v4", Some("v4")),
            ("visitor_idx=x", None),
            ("a=visitor_id=x", None),
            ("visitor_id=; b=2", None),
            ("", None),
        ];
        for (header, expected) in cases {
            assert_eq!(
                cookie_value(header.as_bytes(), VISITOR_COOKIE.as_bytes()),
                expected,
                "{header:?}"
            );
        }
    }

    #[test]
    fn paths_fall_into_their_groups() {
        let cart = |id| Route::Group {
            group: Group::Cart,
            id,
        };
        assert_eq!(classify("/v1/carts"), cart(None));
        assert_eq!(classify("/v1/carts/"), cart(None));
        assert_eq!(classify("/v1/carts/crt_1/items/SKU"), cart(Some("crt_1")));
        assert_eq!(
            classify("/v1/orders/ord_9/events"),
            Route::Group {
                group: Group::Orders,
                id: Some("ord_9")
            }
        );
        assert_eq!(classify("/v1/webhooks/stripe"), Route::StripeWebhook);
        for legacy in [
            "/",
            "/v1/cartsx",
            "/v2/carts",
            "/v1/webhooks/paypal",
            "/checkout",
        ] {
            assert_eq!(classify(legacy), Route::Legacy, "{legacy}");
        }
    }

    #[test]
    fn new_service_ids_go_new_even_when_the_flag_is_off() {
        let off = Snapshot::uniform(false, 0);
        for path in ["/v1/carts/crt_abc", "/v1/orders/ord_abc/events"] {
            let decision = decide(&off, &classify(path), &HeaderMap::new());
            assert_eq!(decision.side, Side::New, "{path}");
        }
    }

    #[test]
    fn legacy_ids_never_go_new_whatever_the_rollout() {
        for rollout in [0, 25, 100] {
            let snapshot = Snapshot::uniform(true, rollout);
            for i in 0..1_000 {
                for path in [format!("/v1/carts/{i}"), format!("/v1/orders/{i}/events")] {
                    let decision = decide(
                        &snapshot,
                        &classify(&path),
                        &headers(&[("x-customer-id", "c")]),
                    );
                    assert_eq!(decision.side, Side::Legacy, "{path} at {rollout} %");
                }
            }
        }
    }

    #[test]
    fn a_disabled_group_sends_everything_else_to_legacy() {
        let off = Snapshot::uniform(false, 100);
        let decision = decide(
            &off,
            &classify("/v1/carts"),
            &headers(&[("x-customer-id", "c")]),
        );
        assert_eq!(decision.side, Side::Legacy);
    }

    #[test]
    fn the_key_is_the_customer_then_the_visitor_cookie() {
        let half = Snapshot::uniform(true, 50);
        let side = |key: &str| decide_by_key(&half, Group::Cart, None, key);
        // Find keys on either side so each rule's effect shows.
        let new_key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| side(k) == Side::New)
            .unwrap();
        let old_key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| side(k) == Side::Legacy)
            .unwrap();

        let cookie = format!("a=b; visitor_id={new_key}");
        let by_customer = decide(
            &half,
            &classify("/v1/carts"),
            &headers(&[("x-customer-id", &old_key), ("cookie", &cookie)]),
        );
        assert_eq!(by_customer.side, Side::Legacy);
        assert_eq!(by_customer.new_visitor, None);

        let by_cookie = decide(
            &half,
            &classify("/v1/carts"),
            &headers(&[("cookie", &cookie)]),
        );
        assert_eq!(by_cookie.side, Side::New);
        assert_eq!(by_cookie.new_visitor, None);
    }

    #[test]
    fn an_anonymous_request_is_bucketed_by_the_visitor_id_it_is_given() {
        let half = Snapshot::uniform(true, 50);
        for _ in 0..100 {
            let decision = decide(&half, &classify("/v1/carts"), &HeaderMap::new());
            let visitor = decision.new_visitor.expect("a visitor id to set");
            assert_eq!(
                decision.side,
                decide_by_key(&half, Group::Cart, None, &visitor)
            );
        }
    }
}
