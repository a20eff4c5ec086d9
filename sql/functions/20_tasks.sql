-- Tasks: creation, status changes, search, and the ready-task queues.

CREATE FUNCTION {{ schema }}.check_task_type(argument text, task_type text)
RETURNS void
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF task_type IS NULL THEN
        PERFORM scheduler.raise_invalid(argument, 'must not be null');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM scheduler.task_type AS tt WHERE tt.type = task_type) THEN
        PERFORM scheduler.raise_invalid(argument, format('unknown task type %L', task_type));
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.check_task_type(text, text) IS
'Raise 22023 naming the argument when the task type does not exist';

-- Batch insert, idempotent: an input equal to a stored task (see the
-- same_task macro) returns the stored task instead of a new one, and equal
-- inputs of one batch collapse.  Concurrent calls for one task type are
-- serialized by a lock on the task type row, so they cannot both insert
-- the same task.
CREATE FUNCTION {{ schema }}.create_tasks(
    types text[],
    arguments jsonb[],
    next_runs timestamptz[],
    policies {{ schema }}.task_policy[] DEFAULT NULL,
    statuses {{ schema }}.task_status[] DEFAULT NULL,
    priorities {{ schema }}.task_priority[] DEFAULT NULL,
    retries_left bigint[] DEFAULT NULL,
    default_policy {{ schema }}.task_policy DEFAULT 'recurring'
)
RETURNS SETOF {{ schema }}.task
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(types), 0);
    bad text;
BEGIN
    PERFORM scheduler.check_lengths('tasks', ARRAY[
        n, coalesce(cardinality(arguments), 0), coalesce(cardinality(next_runs), 0),
        cardinality(policies), cardinality(statuses), cardinality(priorities),
        cardinality(retries_left)
    ]);
    IF n = 0 THEN
        RETURN;
    END IF;
    SELECT i.type INTO bad
    FROM unnest(types) AS i (type)
    WHERE i.type IS NULL OR NOT EXISTS (
        SELECT 1 FROM scheduler.task_type AS tt WHERE tt.type = i.type
    )
    LIMIT 1;
    IF FOUND THEN
        PERFORM scheduler.raise_invalid('tasks.type', format('unknown task type %L', bad));
    END IF;
    IF array_position(next_runs, NULL) IS NOT NULL THEN
        PERFORM scheduler.raise_invalid('tasks.next_run', 'must not be null');
    END IF;
    IF EXISTS (
        SELECT 1 FROM unnest(arguments) AS a (arguments)
        WHERE a.arguments IS NULL
            OR jsonb_typeof(a.arguments -> 'args') IS DISTINCT FROM 'array'
            OR jsonb_typeof(a.arguments -> 'kwargs') IS DISTINCT FROM 'object'
    ) THEN
        PERFORM scheduler.raise_invalid('tasks.arguments',
            'must be {"args": [...], "kwargs": {...}}');
    END IF;
    SELECT tt.type INTO bad
    FROM unnest(types, policies) AS i (type, policy)
    JOIN scheduler.task_type AS tt ON tt.type = i.type
    WHERE coalesce(i.policy, default_policy) = 'recurring' AND tt.default_interval IS NULL
    LIMIT 1;
    IF FOUND THEN
        PERFORM scheduler.raise_invalid('tasks.policy', format(
            'task type %L has no default_interval, so its tasks must be oneshot', bad));
    END IF;

    PERFORM 1
    FROM scheduler.task_type AS tt
    WHERE tt.type = ANY(types)
    ORDER BY tt.type
    FOR NO KEY UPDATE;

    RETURN QUERY
    WITH input AS (
        SELECT
            i.ord,
            i.type,
            i.arguments,
            i.next_run,
            coalesce(i.policy, default_policy) AS policy,
            coalesce(i.status, 'next_run_not_scheduled') AS status,
            i.priority,
            i.retries_left
        FROM unnest(
            types, arguments, next_runs,
            coalesce(policies, array_fill(NULL::scheduler.task_policy, ARRAY[n])),
            coalesce(statuses, array_fill(NULL::scheduler.task_status, ARRAY[n])),
            coalesce(priorities, array_fill(NULL::scheduler.task_priority, ARRAY[n])),
            coalesce(retries_left, array_fill(NULL::bigint, ARRAY[n]))
        ) WITH ORDINALITY AS i (
            type, arguments, next_run, policy, status, priority, retries_left, ord
        )
    ),

    matched AS (
        SELECT
            i.*,
            (
                SELECT t.id
                FROM scheduler.task AS t
                WHERE
                    t.arguments_md5 = md5(i.arguments::text)::uuid
                    AND {{ same_task('t', 'i') | indent(20) }}
                ORDER BY t.id
                LIMIT 1
            ) AS stored_id
        FROM input AS i
    ),

    fresh AS (
        SELECT DISTINCT ON (m.type, m.arguments, m.policy, m.priority, m.status,
                            CASE WHEN m.policy = 'oneshot' THEN m.next_run END)
            m.*
        FROM matched AS m
        WHERE m.stored_id IS NULL
        ORDER BY m.type, m.arguments, m.policy, m.priority, m.status,
            CASE WHEN m.policy = 'oneshot' THEN m.next_run END, m.ord
    ),

    inserted AS (
        INSERT INTO scheduler.task AS t (
            type, arguments, next_run, current_interval, status, policy, retries_left, priority,
            arguments_md5
        )
        SELECT
            f.type, f.arguments, f.next_run, tt.default_interval, f.status, f.policy,
            coalesce(f.retries_left, tt.num_retries, 0), f.priority, md5(f.arguments::text)::uuid
        FROM fresh AS f
        JOIN scheduler.task_type AS tt ON tt.type = f.type
        ORDER BY f.ord
        RETURNING t.*
    ),

    resolved AS (
        SELECT
            coalesce(m.stored_id, ins.id) AS id,
            min(m.ord) AS first_ord
        FROM matched AS m
        LEFT JOIN inserted AS ins
            ON m.stored_id IS NULL AND {{ same_task('ins', 'm') | indent(12) }}
        GROUP BY 1
    ),

    task_rows AS (
        SELECT ins.* FROM inserted AS ins
        UNION ALL
        SELECT t.*
        FROM scheduler.task AS t
        WHERE t.id IN (SELECT m.stored_id FROM matched AS m)
    )

    SELECT r.*
    FROM resolved AS res
    JOIN task_rows AS r ON r.id = res.id
    ORDER BY res.first_ord;
END
$$;

COMMENT ON FUNCTION {{ schema }}.create_tasks(
    text[],
    jsonb[],
    timestamptz[],
    {{ schema }}.task_policy[],
    {{ schema }}.task_status[],
    {{ schema }}.task_priority[],
    bigint[],
    {{ schema }}.task_policy
) IS
'Insert tasks given as parallel arrays; returns, once each and in input order, the stored '
'task matching each input (existing twins are returned, not duplicated)';

CREATE FUNCTION {{ schema }}.set_status_tasks(
    task_ids bigint[],
    status {{ schema }}.task_status DEFAULT 'disabled',
    next_run timestamptz DEFAULT NULL
)
RETURNS SETOF {{ schema }}.task
LANGUAGE plpgsql
AS $$
BEGIN
    IF set_status_tasks.status IS NULL THEN
        PERFORM scheduler.raise_invalid('status', 'must not be null');
    END IF;
    RETURN QUERY
    UPDATE scheduler.task AS t
    SET
        status = set_status_tasks.status,
        next_run = coalesce(set_status_tasks.next_run, t.next_run)
    WHERE t.id = ANY(task_ids)
    RETURNING t.*;
END
$$;

COMMENT ON FUNCTION {{ schema }}.set_status_tasks(
    bigint[], {{ schema }}.task_status, timestamptz
) IS
'Set the status (and next_run, when given) of the listed tasks; returns the changed tasks';

CREATE FUNCTION {{ schema }}.get_tasks(task_ids bigint[])
RETURNS SETOF {{ schema }}.task
LANGUAGE sql
STABLE
BEGIN ATOMIC
    SELECT t.*
    FROM {{ schema }}.task AS t
    WHERE t.id = ANY(get_tasks.task_ids)
    ORDER BY t.id;
END;

COMMENT ON FUNCTION {{ schema }}.get_tasks(bigint[]) IS
'The tasks of those ids, by id; unknown ids are skipped';

CREATE FUNCTION {{ schema }}.search_tasks(
    task_ids bigint[] DEFAULT NULL,
    task_types text[] DEFAULT NULL,
    statuses {{ schema }}.task_status[] DEFAULT NULL,
    priorities {{ schema }}.task_priority[] DEFAULT NULL,
    policies {{ schema }}.task_policy[] DEFAULT NULL,
    before timestamptz DEFAULT NULL,
    after timestamptz DEFAULT NULL,
    max_rows bigint DEFAULT NULL
)
RETURNS SETOF {{ schema }}.task
LANGUAGE plpgsql
STABLE
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    PERFORM scheduler.check_count('limit', max_rows);
    RETURN QUERY
    SELECT t.*
    FROM scheduler.task AS t
    WHERE
        (task_ids IS NULL OR t.id = ANY(task_ids))
        AND (task_types IS NULL OR t.type = ANY(task_types))
        AND (statuses IS NULL OR t.status = ANY(statuses))
        AND (priorities IS NULL OR t.priority = ANY(priorities))
        AND (policies IS NULL OR t.policy = ANY(policies))
        AND (search_tasks.before IS NULL OR t.next_run <= search_tasks.before)
        AND (search_tasks.after IS NULL OR t.next_run >= search_tasks.after)
    ORDER BY t.id
    LIMIT max_rows;
END
$$;

COMMENT ON FUNCTION {{ schema }}.search_tasks(
    bigint[],
    text[],
    {{ schema }}.task_status[],
    {{ schema }}.task_priority[],
    {{ schema }}.task_policy[],
    timestamptz,
    timestamptz,
    bigint
) IS
'Tasks matching every non-null filter (next_run <= before, next_run >= after), by id';

{% for claim in [false, true] %}
{% for with_priority in [false, true] %}
{% set name = ('grab' if claim else 'peek') ~ '_ready_'
    ~ ('priority_' if with_priority else '') ~ 'tasks' %}
{% set order = ('c.priority, ' if with_priority else '') ~ 'c.next_run, c.id' %}
CREATE FUNCTION {{ schema }}.{{ name }}(
    task_type text, ts timestamptz DEFAULT NULL, num_tasks bigint DEFAULT NULL
)
RETURNS SETOF {{ schema }}.task
LANGUAGE plpgsql
{{ 'VOLATILE' if claim else 'STABLE' }}
AS $$
BEGIN
    PERFORM scheduler.check_task_type('task_type', task_type);
    PERFORM scheduler.check_count('num_tasks', num_tasks);
    RETURN QUERY
{%- if claim %}
    WITH picked AS (
        {{ ready_tasks(with_priority, true) | indent(8) }}
    ),

    claimed AS (
        UPDATE scheduler.task AS t
        SET status = 'next_run_scheduled'
        -- by primary key, whatever the planner guesses of the pick's size
        WHERE t.id = ANY(ARRAY(SELECT picked.id FROM picked))
        RETURNING t.*
    )

    SELECT c.* FROM claimed AS c
{%- else %}
    SELECT c.*
    FROM scheduler.task AS c
    WHERE c.id IN (
        {{ ready_tasks(with_priority, false) | indent(8) }}
    )
{%- endif %}
    ORDER BY {{ order }};
END
$$;

COMMENT ON FUNCTION {{ schema }}.{{ name }}(text, timestamptz, bigint) IS
{% if with_priority %}
'Ready tasks of a type that have a priority (due at ts, default now), highest priority '
'then oldest next_run first, at most num_tasks: '
{% else %}
'Ready tasks of a type without priority (due at ts, default now), oldest next_run first, '
'at most num_tasks: '
{% endif %}
{% if claim %}
'claimed (they become next_run_scheduled; concurrent callers never get the same task)';
{% else %}
'read only';
{% endif %}
{% endfor %}
{% endfor %}
