-- Orders: the orders themselves, their price snapshot, stock, idempotency keys and the
-- order processor's job queue. Owned by the orders service.
CREATE SCHEMA IF NOT EXISTS orders;

CREATE TABLE orders.orders (
    id              text PRIMARY KEY,
    status          text NOT NULL CHECK (status IN
                        ('pending', 'reserved', 'awaiting_payment', 'paid', 'confirmed', 'failed', 'cancelled')),
    -- Where the order's stock is: never reserved, held, handed back, or sold.
    stock           text NOT NULL DEFAULT 'none' CHECK (stock IN ('none', 'reserved', 'released', 'sold')),
    cart_id         text NOT NULL,
    email           text NOT NULL,
    currency        char(3) NOT NULL,
    total           bigint NOT NULL CHECK (total >= 0),
    payment_method  text,
    payment_id      text,
    payment_status  text,
    client_secret   text,
    failure_reason  text,
    payment_due_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_open_idx ON orders.orders (updated_at)
    WHERE status IN ('pending', 'reserved', 'awaiting_payment', 'paid');

CREATE TABLE orders.order_lines (
    order_id    text NOT NULL REFERENCES orders.orders (id),
    sku         text NOT NULL,
    name        text NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  bigint NOT NULL CHECK (unit_price >= 0),
    line_total  bigint NOT NULL CHECK (line_total >= 0),
    PRIMARY KEY (order_id, sku)
);

-- Every state change, in order: the audit trail and the source of the event stream.
CREATE TABLE orders.order_events (
    id          bigserial PRIMARY KEY,
    order_id    text NOT NULL REFERENCES orders.orders (id),
    from_status text,
    to_status   text NOT NULL,
    reason      text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order_idx ON orders.order_events (order_id, id);

CREATE TABLE orders.inventory (
    sku         text PRIMARY KEY,
    on_hand     bigint NOT NULL CHECK (on_hand >= 0),
    reserved    bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (reserved <= on_hand)
);

CREATE TABLE orders.idempotency_keys (
    key          text PRIMARY KEY,
    request      text NOT NULL,
    order_id     text NOT NULL,
    status_code  integer NOT NULL,
    response     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expiry_idx ON orders.idempotency_keys (expires_at);

CREATE TABLE orders.jobs (
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
CREATE INDEX jobs_due_idx ON orders.jobs (run_at) WHERE status = 'pending';
CREATE INDEX jobs_lease_idx ON orders.jobs (locked_until) WHERE status = 'running';
