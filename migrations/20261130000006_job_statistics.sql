-- During a burst the workers refresh the statistics of their queue table (the claim's plan
-- depends on how many jobs there are). Only the columns claims filter and sort on need them,
-- and a small sample does: ANALYZE then reads 3,000 rows, not every row and every payload.
DO $$
DECLARE
    queue text;
BEGIN
    FOREACH queue IN ARRAY ARRAY['orders.jobs', 'payments.jobs'] LOOP
        EXECUTE format(
            'ALTER TABLE %s
                 ALTER COLUMN payload SET STATISTICS 0,
                 ALTER COLUMN last_error SET STATISTICS 0,
                 ALTER COLUMN traceparent SET STATISTICS 0,
                 ALTER COLUMN dedup_key SET STATISTICS 0,
                 ALTER COLUMN locked_by SET STATISTICS 0,
                 ALTER COLUMN created_at SET STATISTICS 0,
                 ALTER COLUMN updated_at SET STATISTICS 0,
                 ALTER COLUMN attempts SET STATISTICS 0,
                 ALTER COLUMN max_attempts SET STATISTICS 0,
                 ALTER COLUMN id SET STATISTICS 10,
                 ALTER COLUMN kind SET STATISTICS 10,
                 ALTER COLUMN status SET STATISTICS 10,
                 ALTER COLUMN run_at SET STATISTICS 10,
                 ALTER COLUMN locked_until SET STATISTICS 10,
                 ALTER COLUMN priority SET STATISTICS 10',
            queue);
    END LOOP;
END $$;
