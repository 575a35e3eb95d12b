-- One user's open live streams, counted for the whole deployment rather than
-- per process: each listening connection's row of a user says how many of
-- the user's streams its process holds, and a follow answers the user's total
-- over the listeners still connected (a crashed process's rows stop counting
-- at once and are swept later, as before).
ALTER TABLE live_followers ADD COLUMN streams integer NOT NULL DEFAULT 1;

-- One more stream of ``followed`` held by the process listening as
-- ``by_listener``; returns the user's streams open now, this one included.
-- Follows of one user take turns (a transaction-scoped advisory lock; the
-- count's statement runs after it, on a snapshot that sees every follow
-- committed before), so two simultaneous follows in two processes answer
-- different totals: the limit is exact.
CREATE FUNCTION engage_live_follow(followed uuid, by_listener integer)
    RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    total bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1701270892, hashtext(followed::text));
    INSERT INTO live_followers AS f (user_id, listener, streams)
         VALUES (followed, by_listener, 1)
    ON CONFLICT (user_id, listener) DO UPDATE SET streams = f.streams + 1;
    SELECT coalesce(sum(f.streams), 0) INTO total
      FROM live_followers f
     WHERE f.user_id = followed
       AND (f.listener = by_listener OR f.listener IN (SELECT pid FROM pg_stat_activity));
    RETURN total;
END
$$;
