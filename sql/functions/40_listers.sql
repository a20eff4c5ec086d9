-- Listers.

CREATE FUNCTION {{ schema }}.get_or_create_lister(
    name text,
    instance_name text DEFAULT '',
    first_visits_queue_prefix text DEFAULT NULL
)
RETURNS SETOF {{ schema }}.lister
LANGUAGE plpgsql
AS $$
DECLARE
    inst text := coalesce(get_or_create_lister.instance_name, '');
BEGIN
    PERFORM scheduler.check_label('name', get_or_create_lister.name);
    PERFORM scheduler.check_label('instance_name', inst, TRUE);
    -- A concurrent creator makes this insert wait, then do nothing; the
    -- select below (a new snapshot) then sees the row it committed.
    RETURN QUERY
    INSERT INTO scheduler.lister AS l (name, instance_name, first_visits_queue_prefix)
    VALUES (get_or_create_lister.name, inst, get_or_create_lister.first_visits_queue_prefix)
    ON CONFLICT ON CONSTRAINT lister_name_instance_name_key DO NOTHING
    RETURNING l.*;
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT l.*
        FROM scheduler.lister AS l
        WHERE l.name = get_or_create_lister.name AND l.instance_name = inst;
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.get_or_create_lister(text, text, text) IS
'The lister of that name and instance (null instance means ''''), created when absent';

CREATE FUNCTION {{ schema }}.get_listers(
    with_first_visits_to_schedule boolean DEFAULT FALSE,
    ids uuid[] DEFAULT NULL,
    lister_name text DEFAULT NULL,
    instance_name text DEFAULT NULL
)
RETURNS SETOF {{ schema }}.lister
LANGUAGE sql
STABLE
BEGIN ATOMIC
    SELECT l.*
    FROM {{ schema }}.lister AS l
    WHERE
        (
            NOT get_listers.with_first_visits_to_schedule
            OR (
                l.last_listing_finished_at IS NOT NULL
                AND l.first_visits_queue_prefix IS NOT NULL
                AND l.first_visits_scheduled_at IS NULL
            )
        )
        AND (get_listers.ids IS NULL OR l.id = ANY(get_listers.ids))
        AND (get_listers.lister_name IS NULL OR l.name = get_listers.lister_name)
        AND (
            get_listers.instance_name IS NULL
            OR l.instance_name = get_listers.instance_name
        )
    ORDER BY l.name, l.instance_name;
END;

COMMENT ON FUNCTION {{ schema }}.get_listers(boolean, uuid[], text, text) IS
'Listers matching every non-null filter; with_first_visits_to_schedule keeps those that '
'finished a listing, have a first_visits_queue_prefix and no first_visits_scheduled_at';

-- Optimistic concurrency: the write happens only if the caller saw the
-- current `updated`; otherwise StaleData (SQLSTATE PGS01), nothing changed.
CREATE FUNCTION {{ schema }}.update_lister(
    id uuid,
    updated timestamptz,
    current_state jsonb,
    last_listing_finished_at timestamptz DEFAULT NULL,
    first_visits_queue_prefix text DEFAULT NULL,
    first_visits_scheduled_at timestamptz DEFAULT NULL
)
RETURNS SETOF {{ schema }}.lister
LANGUAGE plpgsql
AS $$
BEGIN
    IF update_lister.id IS NULL THEN
        PERFORM scheduler.raise_invalid('lister.id', 'must not be null');
    END IF;
    PERFORM scheduler.check_objects('lister.current_state', ARRAY[update_lister.current_state]);
    RETURN QUERY
    UPDATE scheduler.lister AS l
    SET
        current_state = coalesce(update_lister.current_state, '{}'),
        last_listing_finished_at = update_lister.last_listing_finished_at,
        first_visits_queue_prefix = update_lister.first_visits_queue_prefix,
        first_visits_scheduled_at = update_lister.first_visits_scheduled_at,
        updated = greatest(clock_timestamp(), l.updated + interval '1 microsecond')
    WHERE l.id = update_lister.id AND l.updated = update_lister.updated
    RETURNING l.*;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM scheduler.lister AS l WHERE l.id = update_lister.id) THEN
            PERFORM scheduler.raise_invalid('lister.id', format('unknown lister %s', update_lister.id));
        END IF;
        RAISE EXCEPTION USING
            ERRCODE = 'PGS01',
            MESSAGE = format('lister %s: stored updated is not %s (stale data)',
                             update_lister.id, update_lister.updated);
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.update_lister(
    uuid, timestamptz, jsonb, timestamptz, text, timestamptz
) IS
'Write a lister if its stored updated equals the given one, setting updated to now; '
'else raise SQLSTATE PGS01 (StaleData) and change nothing';

CREATE FUNCTION {{ schema }}.get_visit_types_for_listed_origins(lister_id uuid)
RETURNS SETOF text
LANGUAGE sql
STABLE
BEGIN ATOMIC
    -- Loose index scan: one index probe per distinct visit type.
    WITH RECURSIVE vt (visit_type) AS (
        (
            SELECT lo.visit_type
            FROM {{ schema }}.listed_origins AS lo
            WHERE lo.lister_id = get_visit_types_for_listed_origins.lister_id
            ORDER BY lo.visit_type
            LIMIT 1
        )
        UNION ALL
        SELECT (
            SELECT lo.visit_type
            FROM {{ schema }}.listed_origins AS lo
            WHERE
                lo.lister_id = get_visit_types_for_listed_origins.lister_id
                AND lo.visit_type > vt.visit_type
            ORDER BY lo.visit_type
            LIMIT 1
        )
        FROM vt
        WHERE vt.visit_type IS NOT NULL
    )

    SELECT vt.visit_type FROM vt
    WHERE vt.visit_type IS NOT NULL;
END;

COMMENT ON FUNCTION {{ schema }}.get_visit_types_for_listed_origins(uuid) IS
'Distinct visit types of the origins of a lister, in order';
