-- Run by the migrator before sql/functions/ is applied: drops every routine
-- of the scheduler schema (and with it the triggers that call them), so that
-- sql/functions/ alone defines them.  url_digest stays: stored generated
-- columns are computed by it.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid, p.oid::regprocedure AS sig, p.prokind
        FROM pg_catalog.pg_proc AS p
        WHERE
            p.pronamespace = 'scheduler'::regnamespace
            AND p.proname <> 'url_digest'
    LOOP
        -- A routine with a SQL-standard body depends on the routines it
        -- calls: an earlier CASCADE may already have dropped it.
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc AS q WHERE q.oid = r.oid);
        IF r.prokind = 'p' THEN
            EXECUTE format('DROP PROCEDURE %s CASCADE', r.sig);
        ELSE
            EXECUTE format('DROP FUNCTION %s CASCADE', r.sig);
        END IF;
    END LOOP;
END
$$;
