-- A checkout is one trace. A payment keeps the trace context of the request that created it,
-- so the work its webhooks cause later (event processing, the callback to orders, settling)
-- joins the checkout's trace. A job may link to spans besides its parent: a webhook batch to
-- each request in it, a job caused by one trace but done for another to its cause.
ALTER TABLE payments.payments ADD COLUMN traceparent text;
ALTER TABLE orders.jobs ADD COLUMN trace_links text[];
ALTER TABLE payments.jobs ADD COLUMN trace_links text[];
