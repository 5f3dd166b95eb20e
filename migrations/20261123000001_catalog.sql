-- The product catalog. Owned by the legacy catalog; the new services only read it.
CREATE SCHEMA IF NOT EXISTS catalog;

CREATE TABLE catalog.products (
    sku        text PRIMARY KEY CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name       text NOT NULL,
    unit_price bigint NOT NULL CHECK (unit_price >= 0),
    currency   char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active     boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);
