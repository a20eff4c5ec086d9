-- Metrics.

CREATE FUNCTION {{ schema }}.update_metrics(
    lister_id uuid DEFAULT NULL, ts timestamptz DEFAULT NULL
)
RETURNS SETOF {{ schema }}.scheduler_metrics
LANGUAGE sql
BEGIN ATOMIC
    -- One pass over listed_origins: the visit statistics it needs are the
    -- copies kept in each row, so there is no join.
    INSERT INTO {{ schema }}.scheduler_metrics AS m (
        lister_id, visit_type, last_update, origins_known, origins_enabled,
        origins_never_visited, origins_with_pending_changes
    )
    SELECT
        lo.lister_id,
        lo.visit_type,
        coalesce(update_metrics.ts, now()) AS last_update,
        count(*) AS origins_known,
        count(*) FILTER (WHERE lo.enabled) AS origins_enabled,
        count(*) FILTER (WHERE lo.enabled AND NOT lo.snapshot_known) AS origins_never_visited,
        count(*) FILTER (
            WHERE lo.enabled AND lo.last_update > lo.last_successful
        ) AS origins_with_pending_changes
    FROM {{ schema }}.listed_origins AS lo
    WHERE update_metrics.lister_id IS NULL OR lo.lister_id = update_metrics.lister_id
    GROUP BY lo.lister_id, lo.visit_type
    ON CONFLICT ON CONSTRAINT scheduler_metrics_pkey DO UPDATE
        SET
            last_update = excluded.last_update,
            origins_known = excluded.origins_known,
            origins_enabled = excluded.origins_enabled,
            origins_never_visited = excluded.origins_never_visited,
            origins_with_pending_changes = excluded.origins_with_pending_changes
    RETURNING m.*;
END;

COMMENT ON FUNCTION {{ schema }}.update_metrics(uuid, timestamptz) IS
'Recount listed origins per (lister, visit type), of one lister or all: known, enabled, '
'enabled never visited (no snapshot), enabled with pending changes (last_update later than '
'last_successful); store them with last_update = ts (default now) and return them';

CREATE FUNCTION {{ schema }}.get_metrics(lister_id uuid DEFAULT NULL, visit_type text DEFAULT NULL)
RETURNS SETOF {{ schema }}.scheduler_metrics
LANGUAGE sql
STABLE
BEGIN ATOMIC
    SELECT m.*
    FROM {{ schema }}.scheduler_metrics AS m
    WHERE
        (get_metrics.lister_id IS NULL OR m.lister_id = get_metrics.lister_id)
        AND (get_metrics.visit_type IS NULL OR m.visit_type = get_metrics.visit_type)
    ORDER BY m.lister_id, m.visit_type;
END;

COMMENT ON FUNCTION {{ schema }}.get_metrics(uuid, text) IS
'Stored metrics, filtered by lister and visit type when given';
