-- An order's Idempotency-Key is now stored scoped to the cart it was used with
-- (`{cart_id}/{key}`): the cart id is the shopper's access token, so one shopper's key neither
-- collides with another's nor tells anyone that it exists. Keys remembered before the upgrade
-- get their scoped twin, so a retry that straddles the upgrade still replays its order; the
-- unscoped originals serve processes of the previous version until they expire and are purged.
INSERT INTO orders.idempotency_keys (key, request, order_id, status_code, response, created_at, expires_at)
SELECT o.cart_id || '/' || k.key, k.request, k.order_id, k.status_code, k.response, k.created_at, k.expires_at
FROM orders.idempotency_keys k
JOIN orders.orders o ON o.id = k.order_id
WHERE k.expires_at > now()
ON CONFLICT (key) DO NOTHING;
