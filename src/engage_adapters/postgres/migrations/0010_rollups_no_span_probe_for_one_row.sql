-- Rollup upkeep for a one-row insert (a single metric written by the API)
-- without the span probe of migration 0003. That probe exists for inserts of
-- many new slots at once (a backfill of history), to spare them the upsert's
-- speculative insertion; for one row it never pays. Measured with loops of
-- 3,000 one-row inserts in one transaction: about 63 us an insert with the
-- probe against 39-41 with the upsert alone (quiet machine), and 0003's
-- function against this one in alternating rounds 122-128 against 80-83 us
-- (a busy machine; bench/README.md, "PostgreSQL's own ceilings").
-- A statement of two rows or more takes the probe as before; every statement
-- ends in the same rows of metric_rollups either way.
CREATE OR REPLACE FUNCTION engage_rollups_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM added OFFSET 1)  -- two rows or more: stops at the second
       AND NOT EXISTS (
        SELECT FROM (SELECT user_id, engage_rollup_slot(min(recorded_at)) AS first,
                            engage_rollup_slot(max(recorded_at)) AS last
                       FROM added GROUP BY 1) AS span
          JOIN metric_rollups r ON r.user_id = span.user_id
           AND r.bucket_start BETWEEN span.first AND span.last)
    THEN
        BEGIN
            INSERT INTO metric_rollups (user_id, metric_type, bucket_start, count, sum, min, max)
            SELECT user_id, metric_type, bucket_start,
                   count(*), sum(metric_value), min(metric_value), max(metric_value)
              FROM (SELECT user_id, metric_type, engage_rollup_slot(recorded_at) AS bucket_start,
                           metric_value
                      FROM added
                     ORDER BY 1, 2, 3) AS sorted
             GROUP BY 1, 2, 3
             ORDER BY 1, 2, 3;  -- one lock order for every writer: no deadlocks
            RETURN NULL;
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- a slot appeared meanwhile: nothing of the above is kept; upsert
        END;
    END IF;
    INSERT INTO metric_rollups AS r (user_id, metric_type, bucket_start, count, sum, min, max)
    SELECT user_id, metric_type, bucket_start,
           count(*), sum(metric_value), min(metric_value), max(metric_value)
      FROM (SELECT user_id, metric_type, engage_rollup_slot(recorded_at) AS bucket_start,
                   metric_value
              FROM added
             ORDER BY 1, 2, 3) AS sorted
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3  -- one lock order for every writer: no deadlocks
    ON CONFLICT (user_id, metric_type, bucket_start) DO UPDATE
       SET count = r.count + excluded.count,
           sum   = r.sum + excluded.sum,
           min   = least(r.min, excluded.min),
           max   = greatest(r.max, excluded.max);
    RETURN NULL;
END
$$;
