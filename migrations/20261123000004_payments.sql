-- Payments: one payment per order, the Stripe events seen (deduplication and audit), the
-- refunds issued, and the payments worker's job queue. Owned by the payments service.
CREATE SCHEMA IF NOT EXISTS payments;

CREATE TABLE payments.payments (
    id               text PRIMARY KEY,
    order_id         text NOT NULL UNIQUE,
    -- The caller's Idempotency-Key and the canonical request it came with: the same key
    -- with another request is refused.
    idempotency_key  text NOT NULL UNIQUE,
    request          text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         char(3) NOT NULL,
    payment_method   text,
    status           text NOT NULL CHECK (status IN
                        ('requires_payment_method', 'requires_confirmation', 'requires_action',
                         'processing', 'succeeded', 'failed', 'canceled',
                         'partially_refunded', 'refunded', 'disputed')),
    -- The Stripe PaymentIntent (pi_…).
    provider_id      text UNIQUE,
    client_secret    text,
    failure_reason   text,
    amount_refunded  bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    -- When the reconciler last asked Stripe about this payment.
    checked_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_open_idx ON payments.payments (updated_at)
    WHERE status IN ('requires_payment_method', 'requires_confirmation', 'requires_action', 'processing');

-- Every verified Stripe event of a handled type, once, with what it says about its
-- PaymentIntent (Stripe keeps the full event). A redelivery only counts up `deliveries`.
CREATE TABLE payments.events (
    id               text PRIMARY KEY,
    type             text NOT NULL,
    -- Stripe's `created`, Unix seconds.
    created          bigint NOT NULL,
    intent_id        text NOT NULL,
    -- `metadata[order_id]`: set on every PaymentIntent payments creates.
    order_id         text,
    -- The payment status the event reports, and what came with it.
    status           text NOT NULL,
    failure_reason   text,
    amount_refunded  bigint,
    deliveries       integer NOT NULL DEFAULT 1,
    received_at      timestamptz NOT NULL DEFAULT now(),
    processed_at     timestamptz,
    outcome          text
);

CREATE TABLE payments.refunds (
    id               text PRIMARY KEY,
    payment_id       text NOT NULL REFERENCES payments.payments (id),
    -- The Stripe Refund (re_…).
    provider_id      text NOT NULL UNIQUE,
    amount           bigint NOT NULL CHECK (amount > 0),
    status           text NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment_idx ON payments.refunds (payment_id);

CREATE TABLE payments.jobs (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'dead')),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL,
    run_at        timestamptz NOT NULL DEFAULT now(),
    locked_by     text,
    locked_until  timestamptz,
    last_error    text,
    traceparent   text,
    dedup_key     text UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_due_idx ON payments.jobs (run_at) WHERE status = 'pending';
CREATE INDEX jobs_lease_idx ON payments.jobs (locked_until) WHERE status = 'running';
