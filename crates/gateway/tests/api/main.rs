//! Black-box tests of the gateway: the real app on a random port, real Postgres and Redis,
//! fake upstreams standing in for legacy and the new services, driven over HTTP. The suites
//! about proxying run once per HTTP path (`GATEWAY_HTTP`): each copy's `HTTP` tells its
//! gateways which.

// Loading the same suite files once per HTTP path is the point.
#![allow(clippy::duplicate_mod)]

mod admin;
mod differential;
mod fakes;
mod openapi;
mod outages;
mod propagation;
mod rollback;
mod support;

/// The proxy suites, with gateways that speak HTTP/1 the `$http` way.
macro_rules! proxy_suites {
    ($name:ident, $http:expr) => {
        // The files beside this one, not in a directory of the copy's name.
        #[path = "."]
        mod $name {
            /// How this copy's gateways speak HTTP/1.
            pub const HTTP: gateway::config::HttpPath = $http;

            #[path = "desync.rs"]
            mod desync;
            #[path = "limits.rs"]
            mod limits;
            #[path = "proxy.rs"]
            mod proxy;
            #[path = "routing.rs"]
            mod routing;
            #[path = "security.rs"]
            mod security;
        }
    };
}

proxy_suites!(own_http, gateway::config::HttpPath::Own);
proxy_suites!(hyper_http, gateway::config::HttpPath::Hyper);
