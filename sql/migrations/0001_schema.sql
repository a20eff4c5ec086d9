-- pgsched schema: task types, tasks, task runs, listers, listed origins,
-- visit statistics, queue positions and metrics.
--
-- Urls are keys of up to 16 KiB (bytes, UTF-8).  A btree entry cannot hold
-- more than about 2.7 KB, so every url key goes through a SHA-256 digest
-- (url_digest), and the ordered paging index holds only a 500-character
-- prefix; "C" collation keeps ordering by prefix consistent with ordering by
-- the whole url.

CREATE SCHEMA IF NOT EXISTS scheduler;

COMMENT ON SCHEMA scheduler IS
'pgsched: task and origin-visit scheduler; every operation is a function here';

CREATE TYPE scheduler.task_status AS ENUM (
    'next_run_not_scheduled', 'next_run_scheduled', 'completed', 'disabled'
);
CREATE TYPE scheduler.task_policy AS ENUM ('recurring', 'oneshot');
-- Declared from most to least urgent: ORDER BY priority puts high first.
CREATE TYPE scheduler.task_priority AS ENUM ('high', 'normal', 'low');
CREATE TYPE scheduler.task_run_status AS ENUM (
    'scheduled', 'started', 'eventful', 'uneventful', 'failed', 'permfailed', 'lost'
);
CREATE TYPE scheduler.last_visit_status AS ENUM ('successful', 'failed', 'not_found');

-- The digest every url key goes through.  A plain SQL expression, so that
-- the planner inlines it wherever it is called (a function call per row
-- would cost more than the hash itself).  Stored in url_digest columns by
-- the writing functions; a CHECK keeps every row honest.
CREATE FUNCTION scheduler.url_digest(url text)
RETURNS bytea
LANGUAGE sql
STABLE STRICT PARALLEL SAFE
RETURN sha256(convert_to(url, 'UTF8'));

COMMENT ON FUNCTION scheduler.url_digest(text) IS
'SHA-256 of the UTF-8 bytes of a url: the indexed key of listed origins and visit stats';

-------------------------------------------------------------------------------
-- Tasks
-------------------------------------------------------------------------------

CREATE TABLE scheduler.task_type (
    type text PRIMARY KEY CHECK (type <> ''),
    description text NOT NULL,
    backend_name text NOT NULL,
    default_interval interval,
    min_interval interval,
    max_interval interval,
    backoff_factor double precision
    CHECK (backoff_factor > 0 AND backoff_factor < 'Infinity'),
    max_queue_length bigint CHECK (max_queue_length >= 0),
    num_retries bigint CHECK (num_retries >= 0),
    retry_delay interval CHECK (retry_delay >= interval '0'),
    CHECK (default_interval > interval '0'),
    CHECK (min_interval > interval '0'),
    CHECK (max_interval > interval '0'),
    CHECK (min_interval <= max_interval)
);

COMMENT ON TABLE scheduler.task_type IS 'Kinds of task, with their rescheduling rules';
COMMENT ON COLUMN scheduler.task_type.default_interval IS
'Interval a new recurring task starts with';
COMMENT ON COLUMN scheduler.task_type.backoff_factor IS
'An eventful run divides the interval by it, an uneventful one multiplies it';
COMMENT ON COLUMN scheduler.task_type.num_retries IS
'Retries a failed or lost run gets before the task gives up';
COMMENT ON COLUMN scheduler.task_type.retry_delay IS
'Delay before a retry (1 hour when null)';

CREATE TABLE scheduler.task (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type text NOT NULL REFERENCES scheduler.task_type (type),
    arguments jsonb NOT NULL,
    next_run timestamptz NOT NULL,
    current_interval interval,
    status scheduler.task_status NOT NULL DEFAULT 'next_run_not_scheduled',
    policy scheduler.task_policy NOT NULL DEFAULT 'recurring',
    retries_left bigint NOT NULL DEFAULT 0 CHECK (retries_left >= 0),
    priority scheduler.task_priority,
    -- md5(arguments::text), written by create_tasks.
    arguments_md5 uuid,
    CHECK (jsonb_typeof(arguments -> 'args') = 'array'),
    CHECK (jsonb_typeof(arguments -> 'kwargs') = 'object'),
    CHECK (policy = 'oneshot' OR current_interval IS NOT NULL)
);

COMMENT ON TABLE scheduler.task IS 'One-shot and recurring tasks';
COMMENT ON COLUMN scheduler.task.arguments IS '{"args": [...], "kwargs": {...}}';
COMMENT ON COLUMN scheduler.task.priority IS 'Null for ordinary tasks';
COMMENT ON COLUMN scheduler.task.arguments_md5 IS
'md5(arguments::text) as a uuid, set by create_tasks to find equal tasks';

-- The grab paths: one ordered partial index each, so a grab reads only the
-- ready tasks of its type, oldest first, and stops after num_tasks rows.
CREATE INDEX task_ready_idx ON scheduler.task (type, next_run, id)
WHERE status = 'next_run_not_scheduled' AND priority IS NULL;
CREATE INDEX task_ready_priority_idx ON scheduler.task (type, priority, next_run, id)
WHERE status = 'next_run_not_scheduled' AND priority IS NOT NULL;
-- Finds the stored twin of a task in create_tasks.  A plain column, not an
-- expression: a claim rewrites every index entry of the task, and would
-- otherwise hash its arguments again each time.
CREATE INDEX task_identity_idx ON scheduler.task (type, arguments_md5);

CREATE TABLE scheduler.task_run (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task bigint NOT NULL REFERENCES scheduler.task (id),
    backend_id text,
    scheduled timestamptz,
    started timestamptz,
    ended timestamptz,
    metadata jsonb NOT NULL DEFAULT '{}',
    status scheduler.task_run_status NOT NULL DEFAULT 'scheduled'
);

COMMENT ON TABLE scheduler.task_run IS 'Executions of tasks, as reported by the workers';
COMMENT ON COLUMN scheduler.task_run.backend_id IS
'Identifier of the run in the execution backend; start and end find runs by it';

CREATE INDEX task_run_task_idx ON scheduler.task_run (task, id);
-- Hash: backend ids have no length limit and are only ever looked up.
CREATE INDEX task_run_backend_id_idx ON scheduler.task_run USING hash (backend_id);
CREATE INDEX task_run_started_idx ON scheduler.task_run (started);
CREATE INDEX task_run_scheduled_idx ON scheduler.task_run (scheduled) WHERE started IS NULL;

-------------------------------------------------------------------------------
-- Listers and listed origins
-------------------------------------------------------------------------------

CREATE TABLE scheduler.lister (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (name <> ''),
    instance_name text NOT NULL DEFAULT '',
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT clock_timestamp(),
    current_state jsonb NOT NULL DEFAULT '{}',
    first_visits_queue_prefix text,
    first_visits_scheduled_at timestamptz,
    last_listing_finished_at timestamptz,
    UNIQUE (name, instance_name)
);

COMMENT ON TABLE scheduler.lister IS 'Listers: programs that enumerate origins of a forge';
COMMENT ON COLUMN scheduler.lister.updated IS
'Changed on every write; update_lister succeeds only when the caller saw the current value';

CREATE TABLE scheduler.listed_origins (
    lister_id uuid NOT NULL REFERENCES scheduler.lister (id),
    url text COLLATE "C" NOT NULL CHECK (url <> '' AND octet_length(url) <= 16384),
    visit_type text NOT NULL CHECK (visit_type <> ''),
    url_digest bytea NOT NULL CHECK (url_digest = sha256(convert_to(url, 'UTF8'))),
    extra_loader_arguments jsonb NOT NULL DEFAULT '{}',
    last_update timestamptz,
    is_fork boolean,
    forked_from_url text,
    enabled boolean NOT NULL DEFAULT TRUE,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    -- Copies of this origin's visit statistics (origin_visit_stats is the
    -- source; a trigger keeps these equal).  With them, every visit policy
    -- filters and orders on one row and one index, with no join.
    last_scheduled timestamptz,
    last_visit timestamptz,
    last_successful timestamptz,
    last_visit_status scheduler.last_visit_status,
    snapshot_known boolean NOT NULL DEFAULT FALSE,
    next_visit_queue_position bigint,
    CONSTRAINT listed_origins_key UNIQUE (url_digest, visit_type, lister_id)
);

COMMENT ON TABLE scheduler.listed_origins IS
'Origins as listers report them, with a copy of their visit statistics';
COMMENT ON COLUMN scheduler.listed_origins.url_digest IS 'scheduler.url_digest(url)';
COMMENT ON COLUMN scheduler.listed_origins.last_scheduled IS
'Copy of origin_visit_stats.last_scheduled, kept by trigger';
COMMENT ON COLUMN scheduler.listed_origins.snapshot_known IS
'Copy of origin_visit_stats.last_snapshot IS NOT NULL, kept by trigger';

-- Paging order: lister, then url, then visit type.
CREATE INDEX listed_origins_page_idx
ON scheduler.listed_origins (lister_id, left(url, 500));

-- One ordered index per visit policy: a grab walks it in policy order,
-- skips what the cooldowns exclude, and stops after `count` rows.
CREATE INDEX listed_origins_oldest_scheduled_idx
ON scheduler.listed_origins (visit_type, enabled, last_scheduled NULLS FIRST);
CREATE INDEX listed_origins_lister_scheduled_idx
ON scheduler.listed_origins (lister_id, visit_type, enabled, last_scheduled NULLS FIRST);
-- The last four key columns of the next three indexes are the cooldown
-- keys of scheduler.visit_cooldown_passed, written exactly as it writes
-- them: an origin a cooldown holds back (scheduled, or failed, not long
-- ago) is then skipped inside the index, without reading its row.  Such
-- origins gather at the head of these policies' orders until visited.
CREATE INDEX listed_origins_never_visited_idx
ON scheduler.listed_origins (
    visit_type,
    enabled,
    last_update,
    (coalesce(last_scheduled, '-infinity'::timestamptz)),
    (
        CASE
            WHEN last_scheduled > coalesce(last_visit, '-infinity'::timestamptz)
                THEN last_scheduled
            ELSE '-infinity'::timestamptz
        END
    ),
    (
        CASE
            WHEN last_visit_status = 'failed'::scheduler.last_visit_status
                THEN coalesce(last_visit, '-infinity'::timestamptz)
            ELSE '-infinity'::timestamptz
        END
    ),
    (
        CASE
            WHEN last_visit_status = 'not_found'::scheduler.last_visit_status
                THEN coalesce(last_visit, '-infinity'::timestamptz)
            ELSE '-infinity'::timestamptz
        END
    )
)
WHERE NOT snapshot_known AND last_update IS NOT NULL;
CREATE INDEX listed_origins_lag_idx
ON scheduler.listed_origins (
    visit_type,
    enabled,
    (last_update - last_successful) DESC,
    (coalesce(last_scheduled, '-infinity'::timestamptz)),
    (
        CASE
            WHEN last_scheduled > coalesce(last_visit, '-infinity'::timestamptz)
                THEN last_scheduled
            ELSE '-infinity'::timestamptz
        END
    ),
    (
        CASE
            WHEN last_visit_status = 'failed'::scheduler.last_visit_status
                THEN coalesce(last_visit, '-infinity'::timestamptz)
            ELSE '-infinity'::timestamptz
        END
    ),
    (
        CASE
            WHEN last_visit_status = 'not_found'::scheduler.last_visit_status
                THEN coalesce(last_visit, '-infinity'::timestamptz)
            ELSE '-infinity'::timestamptz
        END
    )
)
WHERE snapshot_known AND last_update > last_successful;
CREATE INDEX listed_origins_without_update_idx
ON scheduler.listed_origins (
    visit_type,
    enabled,
    next_visit_queue_position NULLS FIRST,
    first_seen,
    (coalesce(last_scheduled, '-infinity'::timestamptz)),
    (
        CASE
            WHEN last_scheduled > coalesce(last_visit, '-infinity'::timestamptz)
                THEN last_scheduled
            ELSE '-infinity'::timestamptz
        END
    ),
    (
        CASE
            WHEN last_visit_status = 'failed'::scheduler.last_visit_status
                THEN coalesce(last_visit, '-infinity'::timestamptz)
            ELSE '-infinity'::timestamptz
        END
    ),
    (
        CASE
            WHEN last_visit_status = 'not_found'::scheduler.last_visit_status
                THEN coalesce(last_visit, '-infinity'::timestamptz)
            ELSE '-infinity'::timestamptz
        END
    )
)
WHERE last_update IS NULL;

-- One row of a page of get_listed_origins: the public fields of a listed
-- origin, and whether another page follows this row.
CREATE TYPE scheduler.listed_origin_page_row AS (
    lister_id uuid,
    url text,
    visit_type text,
    extra_loader_arguments jsonb,
    last_update timestamptz,
    is_fork boolean,
    forked_from_url text,
    enabled boolean,
    first_seen timestamptz,
    last_seen timestamptz,
    has_more boolean
);

-------------------------------------------------------------------------------
-- Visit statistics, queue positions, metrics
-------------------------------------------------------------------------------

CREATE TABLE scheduler.origin_visit_stats (
    url text COLLATE "C" NOT NULL CHECK (url <> '' AND octet_length(url) <= 16384),
    visit_type text NOT NULL CHECK (visit_type <> ''),
    url_digest bytea NOT NULL CHECK (url_digest = sha256(convert_to(url, 'UTF8'))),
    last_successful timestamptz,
    last_visit timestamptz,
    last_visit_status scheduler.last_visit_status,
    last_scheduled timestamptz,
    last_snapshot bytea CHECK (octet_length(last_snapshot) = 20),
    next_visit_queue_position bigint,
    next_position_offset integer NOT NULL DEFAULT 4,
    successive_visits integer NOT NULL DEFAULT 1,
    CONSTRAINT origin_visit_stats_key UNIQUE (url_digest, visit_type)
);

COMMENT ON TABLE scheduler.origin_visit_stats IS
'What is known of the visits of each (url, visit_type); copied into listed_origins';

CREATE TABLE scheduler.visit_scheduler_queue_position (
    visit_type text PRIMARY KEY,
    position bigint NOT NULL
);

COMMENT ON TABLE scheduler.visit_scheduler_queue_position IS
'Current position of the origins_without_last_update queue, per visit type';

CREATE TABLE scheduler.scheduler_metrics (
    lister_id uuid NOT NULL REFERENCES scheduler.lister (id),
    visit_type text NOT NULL,
    last_update timestamptz NOT NULL,
    origins_known bigint NOT NULL DEFAULT 0,
    origins_enabled bigint NOT NULL DEFAULT 0,
    origins_never_visited bigint NOT NULL DEFAULT 0,
    origins_with_pending_changes bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (lister_id, visit_type)
);

COMMENT ON TABLE scheduler.scheduler_metrics IS
'Counts of listed origins per lister and visit type, as of last_update';
