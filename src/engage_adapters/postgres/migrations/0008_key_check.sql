-- The check behind a request authenticated by an API key, with the count of its
-- use against the key's rate limit, as one statement that fails when the key may
-- not be used: sent in one pipeline with the request's own statement
-- (postgres/transaction.py, ``SessionGate``), it makes PostgreSQL skip that
-- statement and roll back the pipeline's implicit transaction, so a page is never
-- read and a write never committed for a refused key, in one round trip for all.
-- The rules are ApiKeyService.authenticate's (engage_core), in its order: the
-- key of ``owner`` with that secret's hash, not revoked, not expired at ``at``
-- (ApiKey.is_usable), holding ``needed``; only then, when ``rate_key`` is given,
-- the use counted as postgres/rate_limits.py counts a hit (same table, same
-- keys), at most ``rate_limit`` in ``rate_window`` seconds. A refused key is not
-- counted: every refusal rolls back. tests/contract proves the fake agrees.
-- EGK01: no such key of ``owner`` or another secret; EGK02: revoked;
-- EGK03: expired; EGK04: without the scope; EGK05: past its rate (DETAIL: the
-- seconds until one more use is allowed).
CREATE FUNCTION engage_key_check(
    checked uuid, owner uuid, secret text, needed text, at timestamptz,
    rate_key text, rate_limit integer, rate_window double precision
) RETURNS SETOF api_keys LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_key api_keys;
    window_start timestamptz := statement_timestamp() - make_interval(secs => rate_window);
    wait double precision;
BEGIN
    SELECT * INTO found_key FROM api_keys k WHERE k.id = checked;
    IF NOT FOUND OR found_key.user_id <> owner OR found_key.secret_hash::text <> secret THEN
        RAISE EXCEPTION 'invalid API key' USING ERRCODE = 'EGK01';
    END IF;
    IF found_key.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'API key revoked' USING ERRCODE = 'EGK02';
    END IF;
    IF found_key.expires_at IS NOT NULL AND found_key.expires_at <= at THEN
        RAISE EXCEPTION 'API key expired' USING ERRCODE = 'EGK03';
    END IF;
    IF NOT (needed = ANY (found_key.scopes)) THEN
        RAISE EXCEPTION 'API key without the scope' USING ERRCODE = 'EGK04';
    END IF;
    IF rate_key IS NOT NULL THEN
        INSERT INTO rate_limits AS r (key, events, expires_at)
        VALUES (rate_key, ARRAY[statement_timestamp()],
                statement_timestamp() + make_interval(secs => rate_window))
        ON CONFLICT (key) DO UPDATE
           SET events = ARRAY(SELECT e FROM unnest(r.events) AS e
                               WHERE e > window_start ORDER BY e) || statement_timestamp(),
               expires_at = statement_timestamp() + make_interval(secs => rate_window)
         WHERE (SELECT count(*) FROM unnest(r.events) AS e WHERE e > window_start) < rate_limit;
        IF NOT FOUND THEN
            -- Allowed again once the oldest event that keeps the key at its limit leaves.
            SELECT extract(epoch FROM e + make_interval(secs => rate_window) - statement_timestamp())
              INTO wait
              FROM rate_limits r, unnest(r.events) AS e
             WHERE r.key = rate_key AND e > window_start
             ORDER BY e DESC OFFSET rate_limit - 1 LIMIT 1;
            RAISE EXCEPTION 'API key past its rate' USING ERRCODE = 'EGK05',
                DETAIL = greatest(coalesce(wait, 0), 0)::text;
        END IF;
    END IF;
    RETURN NEXT found_key;
END
$$;
