-- Privileges, re-applied after every function install (functions are
-- re-created, and lose their grants, on each migrate).
--
-- Every function runs as its owner (SECURITY DEFINER) with a fixed
-- search_path, so that callers need no privilege on the tables: the API
-- role can do exactly what the functions do, nothing else.
DO $$
DECLARE
    r record;
    have_roles boolean := (
        SELECT count(*) = 2
        FROM pg_catalog.pg_roles
        WHERE rolname IN ('pgsched_api', 'pgsched_readonly')
    );
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure AS sig, p.proname, p.provolatile, p.prorettype
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = '{{ schema }}'::regnamespace
    LOOP
        -- Pure expressions stay plain, so the planner can inline them
        -- (visit_cooldown_passed is evaluated for every row a grab reads).
        IF r.proname NOT IN (
            'url_digest', 'visit_cooldown_passed', 'backoff_interval', 'visit_interval',
            'next_visit_queue_position'
        ) THEN
            EXECUTE format(
                'ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', r.sig
            );
        END IF;
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', r.sig);
        IF have_roles THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pgsched_api', r.sig);
            IF r.provolatile <> 'v' AND r.prorettype <> 'trigger'::regtype THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pgsched_readonly', r.sig);
            END IF;
        END IF;
    END LOOP;
    IF have_roles THEN
        GRANT USAGE ON SCHEMA {{ schema }} TO pgsched_api, pgsched_readonly;
        GRANT SELECT ON ALL TABLES IN SCHEMA {{ schema }} TO pgsched_readonly;
    END IF;
END
$$;
