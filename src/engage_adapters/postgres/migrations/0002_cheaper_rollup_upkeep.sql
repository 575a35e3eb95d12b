-- Cheaper rollup upkeep for large inserts (a backfill of 1,000,000 metrics is
-- about 1,000,000 rollup upserts); what the rollups promise does not change.

-- 1. No foreign key from metric_rollups to users. It cost one RI check per
-- upserted slot (about 2.8 s of a 1,000,000-row backfill) and guarded nothing
-- the triggers do not: a slot exists only while metrics of its user exist
-- (engage_rollups_add writes slots from inserted metrics, which do have the
-- foreign key), and when a user is deleted, the cascade deletes their metrics,
-- whose AFTER DELETE trigger recomputes every touched slot from the (now empty)
-- raw rows and deletes it. tests/integration/test_rollup_upkeep.py checks that a
-- deleted user leaves no rollup behind.
ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_user_id_fkey;

-- 2. Aggregate the inserted rows by sorting them, not hashing them. The planner
-- cannot estimate a transition table's groups (it guessed 65,000 for 1,000,000),
-- so it chose a hash aggregate, which spilled to disk at the default work_mem
-- (and took 490 MB, slower still, when allowed to stay in memory), then sorted
-- the groups for the lock order. Sorting the rows first gives the lock order and
-- the groups in one pass, and costs little when they arrive in slot order (as a
-- backfill inserts them). Same statement otherwise: one upsert per inserting
-- statement, slots locked in one order by every writer.
CREATE OR REPLACE FUNCTION engage_rollups_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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
