-- The rollup trigger's check for slots that already exist, probed per user.
--
-- Migration 0003 asks "does any inserting user have a slot between the first and
-- the last slot this statement touches?" as one join under EXISTS. PostgreSQL
-- plans an EXISTS for its first row, and once metric_rollups is large it took a
-- scan of metric_rollups with the per-user spans re-aggregated for every row of
-- it: harmless while every answer was "yes" early, but a statement opening only
-- new slots (a backfill's second chunk, 1,000 users, a million slots) ran for
-- minutes. The LATERAL subquery (with its LIMIT, never pulled up into a join)
-- makes the spans the outer side: one index probe of metric_rollups_user_time
-- per user. The result is the same in every case.

CREATE OR REPLACE FUNCTION engage_rollups_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM (SELECT user_id, engage_rollup_slot(min(recorded_at)) AS first,
                            engage_rollup_slot(max(recorded_at)) AS last
                       FROM added GROUP BY 1) AS span
          CROSS JOIN LATERAL (
                SELECT FROM metric_rollups r
                 WHERE r.user_id = span.user_id
                   AND r.bucket_start BETWEEN span.first AND span.last
                 LIMIT 1) AS taken)
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
