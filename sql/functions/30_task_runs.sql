-- Task runs: scheduling, start, end (which reschedules the task), archive.

CREATE FUNCTION {{ schema }}.schedule_task_runs(
    task_ids bigint[],
    backend_ids text[],
    scheduled timestamptz[] DEFAULT NULL,
    metadata jsonb[] DEFAULT NULL
)
RETURNS SETOF {{ schema }}.task_run
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(task_ids), 0);
    detail text;
BEGIN
    PERFORM scheduler.check_lengths('task_runs', ARRAY[
        n, coalesce(cardinality(backend_ids), 0), cardinality(scheduled), cardinality(metadata)
    ]);
    IF array_position(task_ids, NULL) IS NOT NULL THEN
        PERFORM scheduler.raise_invalid('task_id', 'must not be null');
    END IF;
    PERFORM scheduler.check_objects('metadata', metadata);
    -- The foreign key finds unknown tasks; its error is reworded below.
    RETURN QUERY
    INSERT INTO scheduler.task_run AS r (task, backend_id, scheduled, metadata, status)
    SELECT
        i.task,
        i.backend_id,
        coalesce(i.scheduled, now()),
        coalesce(i.metadata, '{}'),
        'scheduled'
    FROM unnest(
        task_ids,
        backend_ids,
        coalesce(scheduled, array_fill(NULL::timestamptz, ARRAY[n])),
        coalesce(metadata, array_fill(NULL::jsonb, ARRAY[n]))
    ) WITH ORDINALITY AS i (task, backend_id, scheduled, metadata, ord)
    ORDER BY i.ord
    RETURNING r.*;
EXCEPTION WHEN foreign_key_violation THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    PERFORM scheduler.raise_invalid('task_id', 'unknown task (' || detail || ')');
END
$$;

COMMENT ON FUNCTION {{ schema }}.schedule_task_runs(bigint[], text[], timestamptz[], jsonb[]) IS
'Record new runs (status scheduled, scheduled default now, metadata default {}) of tasks';

-- Finds the run of a backend id: the newest one, if a backend reused an id.
CREATE FUNCTION {{ schema }}.task_run_of_backend_id(backend_id text)
RETURNS bigint
LANGUAGE sql
STABLE
BEGIN ATOMIC
    SELECT r.id
    FROM {{ schema }}.task_run AS r
    WHERE r.backend_id = task_run_of_backend_id.backend_id
    ORDER BY r.id DESC
    LIMIT 1;
END;

COMMENT ON FUNCTION {{ schema }}.task_run_of_backend_id(text) IS
'Id of the newest task run with that backend id, or null';

CREATE FUNCTION {{ schema }}.start_task_run(
    backend_id text, metadata jsonb DEFAULT NULL, ts timestamptz DEFAULT NULL
)
RETURNS SETOF {{ schema }}.task_run
LANGUAGE sql
BEGIN ATOMIC
    SELECT {{ schema }}.check_objects('metadata', ARRAY[start_task_run.metadata]);
    UPDATE {{ schema }}.task_run AS r
    SET
        started = coalesce(start_task_run.ts, now()),
        status = 'started',
        metadata = r.metadata || coalesce(start_task_run.metadata, '{}')
    WHERE r.id = {{ schema }}.task_run_of_backend_id(start_task_run.backend_id)
    RETURNING r.*;
END;

COMMENT ON FUNCTION {{ schema }}.start_task_run(text, jsonb, timestamptz) IS
'Mark the run of a backend id started at ts (default now), merging metadata (new keys win); '
'returns no row when no run has that backend id';

CREATE FUNCTION {{ schema }}.end_task_run(
    backend_id text,
    status {{ schema }}.task_run_status,
    metadata jsonb DEFAULT NULL,
    ts timestamptz DEFAULT NULL
)
RETURNS SETOF {{ schema }}.task_run
LANGUAGE plpgsql
AS $$
BEGIN
    IF end_task_run.status IS NULL THEN
        PERFORM scheduler.raise_invalid('status', 'must not be null');
    END IF;
    PERFORM scheduler.check_objects('metadata', ARRAY[end_task_run.metadata]);
    -- The task_run_ended trigger reschedules the task.
    RETURN QUERY
    UPDATE scheduler.task_run AS r
    SET
        ended = coalesce(end_task_run.ts, now()),
        status = end_task_run.status,
        metadata = r.metadata || coalesce(end_task_run.metadata, '{}')
    WHERE r.id = scheduler.task_run_of_backend_id(end_task_run.backend_id)
    RETURNING r.*;
END
$$;

COMMENT ON FUNCTION {{ schema }}.end_task_run(
    text, {{ schema }}.task_run_status, jsonb, timestamptz
) IS
'End the run of a backend id at ts (default now) with a final status, merging metadata; '
'the task is rescheduled by trigger (see task_run_ended). No row when the id is unknown';

CREATE FUNCTION {{ schema }}.backoff_interval(
    current_interval interval,
    backoff_factor double precision,
    min_interval interval,
    max_interval interval,
    eventful boolean
)
RETURNS interval
LANGUAGE sql
IMMUTABLE
RETURN greatest(
    min_interval,
    least(
        max_interval,
        -- without a max_interval, a century at most (see check_interval)
        interval '100 years',
        CASE
            WHEN backoff_factor IS NULL THEN current_interval
            WHEN eventful THEN current_interval / backoff_factor
            ELSE current_interval * backoff_factor
        END
    )
);

COMMENT ON FUNCTION {{ schema }}.backoff_interval(
    interval, double precision, interval, interval, boolean
) IS
'Next interval of a recurring task: divided by the factor after an eventful run, multiplied '
'after an uneventful one, kept within [min_interval, max_interval] (null bounds ignored)';

-- Row trigger: when a run reaches a final status, its task moves on.
CREATE FUNCTION {{ schema }}.task_run_ended()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    t scheduler.task;
    tt scheduler.task_type;
    ended timestamptz := coalesce(NEW.ended, now());
    next_interval interval;
BEGIN
    SELECT * INTO t FROM scheduler.task AS x WHERE x.id = NEW.task FOR NO KEY UPDATE;
    SELECT * INTO tt FROM scheduler.task_type AS y WHERE y.type = t.type;
    IF NEW.status = 'permfailed' THEN
        UPDATE scheduler.task AS x SET status = 'disabled' WHERE x.id = t.id;
    ELSIF NEW.status IN ('eventful', 'uneventful') THEN
        IF t.policy = 'oneshot' THEN
            UPDATE scheduler.task AS x SET status = 'completed' WHERE x.id = t.id;
        ELSE
            next_interval := scheduler.backoff_interval(
                t.current_interval, tt.backoff_factor, tt.min_interval, tt.max_interval,
                NEW.status = 'eventful');
            UPDATE scheduler.task AS x
            SET status = 'next_run_not_scheduled',
                current_interval = next_interval,
                next_run = ended + next_interval,
                retries_left = coalesce(tt.num_retries, 0)
            WHERE x.id = t.id;
        END IF;
    ELSIF t.retries_left > 0 THEN
        -- failed or lost, with retries left
        UPDATE scheduler.task AS x
        SET status = 'next_run_not_scheduled',
            next_run = ended + coalesce(tt.retry_delay, interval '1 hour'),
            retries_left = t.retries_left - 1
        WHERE x.id = t.id;
    ELSIF t.policy = 'oneshot' THEN
        UPDATE scheduler.task AS x SET status = 'disabled' WHERE x.id = t.id;
    ELSE
        UPDATE scheduler.task AS x
        SET status = 'next_run_not_scheduled',
            next_run = ended + t.current_interval,
            retries_left = coalesce(tt.num_retries, 0)
        WHERE x.id = t.id;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION {{ schema }}.task_run_ended() IS
'Trigger: reschedule, complete or disable the task of a run that reached a final status';

CREATE OR REPLACE TRIGGER task_run_ended
AFTER UPDATE OF status ON {{ schema }}.task_run
FOR EACH ROW
WHEN (
    new.status IN ('eventful', 'uneventful', 'failed', 'permfailed', 'lost')
    AND old.status IS DISTINCT FROM new.status
)
EXECUTE FUNCTION {{ schema }}.task_run_ended();

CREATE FUNCTION {{ schema }}.get_task_runs(task_ids bigint[], max_rows bigint DEFAULT NULL)
RETURNS SETOF {{ schema }}.task_run
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    PERFORM scheduler.check_count('limit', max_rows);
    RETURN QUERY
    SELECT r.*
    FROM scheduler.task_run AS r
    WHERE r.task = ANY(task_ids)
    ORDER BY r.task, r.id
    LIMIT max_rows;
END
$$;

COMMENT ON FUNCTION {{ schema }}.get_task_runs(bigint[], bigint) IS
'Runs of those tasks, by task then run id, at most max_rows';

-- Archive listing, keyset-paged on (task id, started, run id); runs never
-- started sort after the started ones of their task.  The token is that
-- key as text; has_more on the last row says whether another page follows.
CREATE FUNCTION {{ schema }}.filter_task_to_archive(
    after_ts timestamptz,
    before_ts timestamptz,
    max_rows bigint DEFAULT 10,
    page_token text DEFAULT NULL
)
RETURNS TABLE (
    task_id bigint,
    task_policy {{ schema }}.task_policy,
    task_status {{ schema }}.task_status,
    task_run_id bigint,
    arguments jsonb,
    type text,
    backend_id text,
    metadata jsonb,
    scheduled timestamptz,
    started timestamptz,
    ended timestamptz,
    task_run_status {{ schema }}.task_run_status,
    row_token text,
    has_more boolean
)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    after_task bigint;
    after_started timestamptz;
    after_run bigint;
BEGIN
    PERFORM scheduler.check_count('limit', max_rows, false, false);
    IF after_ts IS NULL OR before_ts IS NULL THEN
        PERFORM scheduler.raise_invalid('after_ts', 'after_ts and before_ts are required');
    END IF;
    IF page_token IS NOT NULL THEN
        BEGIN
            after_task := split_part(page_token, ' ', 1)::bigint;
            after_started := split_part(page_token, ' ', 2)::timestamptz;
            after_run := split_part(page_token, ' ', 3)::bigint;
        EXCEPTION WHEN data_exception THEN
            after_task := NULL;
        END;
        IF after_task IS NULL OR after_started IS NULL OR after_run IS NULL THEN
            PERFORM scheduler.raise_invalid('page_token', format('malformed: %L', page_token));
        END IF;
    END IF;
    RETURN QUERY
    SELECT
        p.task_id, p.task_policy, p.task_status, p.task_run_id, p.arguments, p.type,
        p.backend_id, p.metadata, p.scheduled, p.started, p.ended, p.task_run_status,
        p.task_id || ' '
        || CASE
            WHEN isfinite(p.sort_started)
                THEN to_char(p.sort_started AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            ELSE 'infinity'
        END
        || ' ' || p.task_run_id,
        p.next_exists
    FROM (
        SELECT
            q.*,
            lead(true, 1, false) OVER (ORDER BY q.task_id, q.sort_started, q.task_run_id)
            AS next_exists
        FROM (
            SELECT
                t.id AS task_id, t.policy AS task_policy, t.status AS task_status,
                r.id AS task_run_id, t.arguments, t.type, r.backend_id, r.metadata,
                r.scheduled, r.started, r.ended, r.status AS task_run_status,
                coalesce(r.started, 'infinity') AS sort_started
            FROM scheduler.task_run AS r
            JOIN scheduler.task AS t ON t.id = r.task
            WHERE
                (
                    (t.policy = 'oneshot' AND t.status IN ('completed', 'disabled'))
                    OR (t.policy = 'recurring' AND t.status = 'disabled')
                )
                AND (
                    (r.started >= after_ts AND r.started < before_ts)
                    OR (r.started IS NULL AND r.scheduled >= after_ts
                        AND r.scheduled < before_ts)
                )
                AND (
                    after_task IS NULL
                    OR (t.id, coalesce(r.started, 'infinity'), r.id)
                    > (after_task, after_started, after_run)
                )
            ORDER BY t.id, coalesce(r.started, 'infinity'), r.id
            LIMIT max_rows + 1
        ) AS q
    ) AS p
    ORDER BY p.task_id, p.sort_started, p.task_run_id
    LIMIT max_rows;
END
$$;

COMMENT ON FUNCTION {{ schema }}.filter_task_to_archive(
    timestamptz, timestamptz, bigint, text
) IS
'Runs of finished tasks (oneshot completed or disabled, recurring disabled) started in '
'[after_ts, before_ts), or never started and scheduled in it; one page of max_rows, by task '
'id then started. Pass the last row''s row_token as page_token while has_more is true';

CREATE FUNCTION {{ schema }}.delete_archived_tasks(task_ids bigint[], task_run_ids bigint[])
RETURNS TABLE (deleted_runs bigint, deleted_tasks bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    runs bigint;
    tasks bigint;
BEGIN
    IF coalesce(cardinality(task_ids), 0) <> coalesce(cardinality(task_run_ids), 0) THEN
        PERFORM scheduler.raise_invalid('task_ids', 'task ids and run ids differ in number');
    END IF;
    DELETE FROM scheduler.task_run AS r
    USING unnest(task_ids, task_run_ids) AS p (task_id, run_id)
    WHERE r.id = p.run_id AND r.task = p.task_id;
    GET DIAGNOSTICS runs = ROW_COUNT;
    DELETE FROM scheduler.task AS t
    WHERE
        t.id = ANY(task_ids)
        AND NOT EXISTS (SELECT 1 FROM scheduler.task_run AS r WHERE r.task = t.id);
    GET DIAGNOSTICS tasks = ROW_COUNT;
    RETURN QUERY SELECT runs, tasks;
END
$$;

COMMENT ON FUNCTION {{ schema }}.delete_archived_tasks(bigint[], bigint[]) IS
'Delete exactly the given (task, run) pairs, then those listed tasks left with no run';
