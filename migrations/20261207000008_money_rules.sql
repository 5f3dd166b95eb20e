-- The money rules. A payment whose order will not take its money is closed: from then on
-- payments makes Stripe agree (the PaymentIntent canceled, or refunded if it was paid), and a
-- success that still arrives is refunded. Events keep the amount and currency they report,
-- so one that disagrees with its payment is recorded as a mismatch instead of applied.
ALTER TABLE payments.payments
    ADD COLUMN closed_at     timestamptz,
    ADD COLUMN close_reason  text;

-- Closed payments whose PaymentIntent may still hold or take money: the reconciler's list.
CREATE INDEX payments_closed_unsettled_idx ON payments.payments (closed_at)
    WHERE closed_at IS NOT NULL AND status NOT IN ('canceled', 'refunded');
-- A failed attempt leaves the PaymentIntent confirmable at Stripe (another card): the
-- reconciler keeps asking about recent ones.
CREATE INDEX payments_failed_idx ON payments.payments (updated_at) WHERE status = 'failed';

ALTER TABLE payments.events
    ADD COLUMN amount    bigint,
    ADD COLUMN currency  text;

-- Refunds payments made by itself (money that arrived for an order that did not happen).
ALTER TABLE payments.refunds
    ADD COLUMN automatic boolean NOT NULL DEFAULT false;
