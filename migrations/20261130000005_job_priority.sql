-- Among due jobs, a higher priority is claimed first: after a burst, a checkout's next step
-- must not wait behind thousands of housekeeping jobs (clearing carts) that nobody waits for.
ALTER TABLE orders.jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0;
DROP INDEX orders.jobs_due_idx;
CREATE INDEX jobs_due_idx ON orders.jobs (priority DESC, run_at) WHERE status = 'pending';

ALTER TABLE payments.jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0;
DROP INDEX payments.jobs_due_idx;
CREATE INDEX jobs_due_idx ON payments.jobs (priority DESC, run_at) WHERE status = 'pending';
