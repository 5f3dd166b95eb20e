# syntax=docker/dockerfile:1
# One image holds every service binary (gateway, cart, orders, payments, stripe-sim and the
# legacy monolith's stand-in); the compose file or the orchestrator picks the binary per
# container with `command:`.

# ---- builder: dependencies first, so a source change rebuilds only the workspace crates ----
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# The workspace's release profile keeps line tables for local profiling; in the image they
# would be four fifths of every binary (the gateway: 79 MB with them, 16 MB without), so the
# image's build drops them and keeps the symbols (panics still name their functions).
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo

# The manifests alone, with stub sources: this layer (every dependency compiled) is reused
# until Cargo.toml or Cargo.lock changes. Declared test and bench targets need a file too,
# or cargo refuses to read the manifest.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates/common/Cargo.toml crates/common/build.rs crates/common/
COPY crates/cart/Cargo.toml crates/cart/
COPY crates/orders/Cargo.toml crates/orders/
COPY crates/payments/Cargo.toml crates/payments/
COPY crates/stripe-sim/Cargo.toml crates/stripe-sim/
COPY crates/gateway/Cargo.toml crates/gateway/
COPY crates/legacy/Cargo.toml crates/legacy/
COPY crates/testkit/Cargo.toml crates/testkit/
COPY xtask/Cargo.toml xtask/
COPY migrations migrations
RUN set -eu; \
    for crate in common cart orders payments stripe-sim gateway legacy testkit; do \
        mkdir -p "crates/$crate/src" "crates/$crate/tests/api"; \
        touch "crates/$crate/src/lib.rs"; \
        echo 'fn main() {}' > "crates/$crate/tests/api/main.rs"; \
    done; \
    for crate in cart orders payments stripe-sim gateway legacy; do \
        echo 'fn main() {}' > "crates/$crate/src/main.rs"; \
    done; \
    mkdir -p crates/gateway/benches xtask/src; \
    echo 'fn main() {}' > crates/gateway/benches/routing.rs; \
    echo 'fn main() {}' > xtask/src/main.rs; \
    cargo build --release --locked \
        --bin gateway --bin cart --bin orders --bin payments --bin stripe-sim --bin legacy

# The real sources. Their files may be older than the stubs' build, so they are touched:
# cargo decides by modification time whether a workspace crate is rebuilt.
COPY crates crates
COPY xtask xtask
RUN set -eu; \
    find crates xtask -name '*.rs' -exec touch {} +; \
    cargo build --release --locked \
        --bin gateway --bin cart --bin orders --bin payments --bin stripe-sim --bin legacy; \
    mkdir -p /out; \
    for bin in gateway cart orders payments stripe-sim legacy; do \
        cp "target/release/$bin" /out/; \
    done

# ---- runtime: Debian slim, CA roots for Stripe over TLS, a non-root user ----
FROM debian:bookworm-slim AS runtime
# ca-certificates: payments calls https://api.stripe.com in production. No curl: the
# healthcheck speaks HTTP over bash's /dev/tcp (deploy/compose/healthcheck), which keeps
# the image free of curl's dozen shared libraries. The CA roots are deliberately unpinned:
# the newest bundle of the release is the one wanted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --chmod=0755 deploy/compose/healthcheck /usr/local/bin/healthcheck
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
ENV RUST_LOG=info,sqlx=warn \
    LOG_FORMAT=json
# Each service's default port; the compose file and manifests set LISTEN_ADDR explicitly.
EXPOSE 8080 8081 8082 8083 8084 8090 12111
STOPSIGNAL SIGTERM
# No ENTRYPOINT binary: the container's command names the service (`gateway`,
# `orders serve`, `orders work`, ...).
CMD ["gateway"]
