-- Roles of a pgsched database (cluster-wide; created once, kept if present):
--   pgsched_api       what the RPC server and workers log in as (through a
--                     member login role): EXECUTE on the scheduler functions,
--                     which are SECURITY DEFINER; no privilege on the tables.
--   pgsched_readonly  DBA inspection: SELECT on the tables, EXECUTE on the
--                     functions that change nothing.
-- The privileges themselves are granted by sql/functions/99_privileges.sql,
-- re-applied after every function install.  A migrator not allowed to create
-- roles (CREATEROLE) gets a warning, and the grants are skipped.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgsched_api') THEN
        CREATE ROLE pgsched_api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgsched_readonly') THEN
        CREATE ROLE pgsched_readonly NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'pgsched: cannot create roles pgsched_api and pgsched_readonly: %', sqlerrm;
END
$$;

REVOKE ALL ON SCHEMA scheduler FROM public;
