-- Stock holds: a new checkout of a cart supersedes that cart's earlier unpaid orders, and a
-- customer may have only so many orders waiting for payment. Both are looked up on every
-- reservation, so each has a small partial index over the open orders alone.
CREATE INDEX orders_open_by_cart_idx ON orders.orders (cart_id)
    WHERE status IN ('pending', 'reserved', 'awaiting_payment');
CREATE INDEX orders_awaiting_by_email_idx ON orders.orders (email)
    WHERE status = 'awaiting_payment';
