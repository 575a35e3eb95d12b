-- The liveness check behind an authenticated request, as a statement that fails
-- when the session may not be used: sent in one pipeline with the request's own
-- statement (postgres/transaction.py, ``SessionGate``), it makes PostgreSQL skip
-- that statement and roll back the pipeline's implicit transaction, so a page is
-- never read and a write never committed for a session that is not live, in one
-- round trip for both. The rule is Session.is_live's (engage_core.model): not
-- ended, and ``at`` before it expires; tests/contract proves the two agree.
-- EGS01: no session ``checked`` of user ``owner``; EGS02: it ended or expired.
CREATE FUNCTION engage_session_check(checked uuid, owner uuid, at timestamptz)
    RETURNS SETOF sessions LANGUAGE plpgsql STABLE AS $$
DECLARE
    found_session sessions;
BEGIN
    SELECT * INTO found_session FROM sessions s WHERE s.id = checked;
    IF NOT FOUND OR found_session.user_id <> owner THEN
        RAISE EXCEPTION 'no such session' USING ERRCODE = 'EGS01';
    END IF;
    IF found_session.ended_at IS NOT NULL OR found_session.expires_at <= at THEN
        RAISE EXCEPTION 'session ended' USING ERRCODE = 'EGS02';
    END IF;
    RETURN NEXT found_session;
END
$$;
