-- Visit results: what loaders report after visiting origins.
--
-- A result (url, visit_type, status, visit date, snapshot) updates the
-- origin's visit statistics: last_visit, last_visit_status, last_successful,
-- last_snapshot, successive_visits, and the two fields that place the origin
-- in the origins_without_last_update queue of its visit type:
--
--   next_position_offset       0 .. 8: lower means "visit again sooner".
--                              A new snapshot (eventful visit) lowers it by
--                              one; the same snapshot again (uneventful), a
--                              failure or a not_found raises it by one.
--   next_visit_queue_position  the visit type's current queue position plus
--                              visit_interval(next_position_offset) in
--                              seconds, spread by +-10% by the url's digest
--                              so that origins visited together do not all
--                              come back at the same moment.

CREATE FUNCTION {{ schema }}.visit_interval(position_offset integer)
RETURNS interval
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE
    WHEN position_offset < 2 THEN interval '1 day'
    WHEN position_offset < 5 THEN interval '2 days'
    ELSE interval '1 day' * power(4, least(position_offset, 8) - 4)
END;

COMMENT ON FUNCTION {{ schema }}.visit_interval(integer) IS
'Time until the next visit of an origin at a queue position offset: 1 day below 2, '
'2 days below 5, then 4^(offset - 4) days (4, 16, 64, 256 days at offset 8 and above)';

CREATE FUNCTION {{ schema }}.next_visit_queue_position(
    queue_position bigint, position_offset integer, url_digest bytea
)
RETURNS bigint
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
RETURN coalesce(queue_position, 0) + round(
    extract(EPOCH FROM {{ schema }}.visit_interval(position_offset))
    * (0.9 + 0.2 * get_byte(url_digest, 0) / 255.0)
)::bigint;

COMMENT ON FUNCTION {{ schema }}.next_visit_queue_position(bigint, integer, bytea) IS
'Queue position of the next visit: the visit type''s queue position (0 when unset) plus '
'visit_interval(position_offset) in seconds, times a factor in [0.9, 1.1] taken from the '
'first byte of the url digest';

CREATE FUNCTION {{ schema }}.record_visit_results(
    urls text[],
    visit_types text[],
    statuses {{ schema }}.last_visit_status[],
    visit_dates timestamptz[] DEFAULT NULL,
    snapshots bytea[] DEFAULT NULL
)
RETURNS SETOF {{ schema }}.origin_visit_stats
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(urls), 0);
    r record;
    v_date timestamptz;
    -- The origin being folded (results come sorted by origin, then date).
    cur_digest bytea;
    cur_type text;
    cur_url text;
    cur_queue bigint;
    st_successful timestamptz;
    st_visit timestamptz;
    st_status scheduler.last_visit_status;
    st_snapshot bytea;
    st_offset integer;
    st_successive integer;
    st_applied boolean;
    -- What goes to origin_visit_stats_upsert, one entry per origin.
    o_urls text [] := '{}';
    o_types text [] := '{}';
    o_successful timestamptz [] := '{}';
    o_visit timestamptz [] := '{}';
    o_status scheduler.last_visit_status [] := '{}';
    o_snapshot bytea [] := '{}';
    o_position bigint [] := '{}';
    o_offset integer [] := '{}';
    o_successive integer [] := '{}';
BEGIN
    IF coalesce(cardinality(visit_types), 0) <> n
        OR coalesce(cardinality(statuses), 0) <> n
        OR (visit_dates IS NOT NULL AND cardinality(visit_dates) <> n)
        OR (snapshots IS NOT NULL AND cardinality(snapshots) <> n) THEN
        PERFORM scheduler.raise_invalid('visit_results', 'the column arrays differ in length');
    END IF;
    IF n = 0 THEN
        RETURN;
    END IF;
    PERFORM scheduler.check_url('visit_results.url', u) FROM unnest(urls) AS u
    WHERE u IS NULL OR u = '' OR octet_length(u) > 16384;
    IF array_position(visit_types, NULL) IS NOT NULL OR array_position(visit_types, '') IS NOT NULL
    THEN
        PERFORM scheduler.raise_invalid('visit_results.visit_type', 'must be a non-empty string');
    END IF;
    IF array_position(statuses, NULL) IS NOT NULL THEN
        PERFORM scheduler.raise_invalid('visit_results.status',
            'must be one of successful, failed, not_found');
    END IF;
    IF EXISTS (
        SELECT 1 FROM unnest(snapshots) AS s (snap) WHERE octet_length(s.snap) <> 20
    ) THEN
        PERFORM scheduler.raise_invalid('visit_results.snapshot', 'must be a 20-byte hash');
    END IF;
    IF EXISTS (
        SELECT 1
        FROM unnest(statuses, coalesce(snapshots, array_fill(NULL::bytea, ARRAY[n])))
            AS x (status, snap)
        WHERE x.status = 'successful' AND x.snap IS NULL
    ) THEN
        PERFORM scheduler.raise_invalid('visit_results.snapshot',
            'a successful visit must give the snapshot it found');
    END IF;

    -- Lock order (see 50_origins.sql): listed origins first, then the stats.
    PERFORM 1
    FROM unnest(urls, visit_types) AS i (url, visit_type)
    JOIN scheduler.listed_origins AS lo
        ON lo.url_digest = scheduler.url_digest(i.url) AND lo.visit_type = i.visit_type
    ORDER BY lo.url_digest, lo.visit_type, lo.lister_id
    FOR NO KEY UPDATE OF lo;
    PERFORM 1
    FROM unnest(urls, visit_types) AS i (url, visit_type)
    JOIN scheduler.origin_visit_stats AS s
        ON s.url_digest = scheduler.url_digest(i.url) AND s.visit_type = i.visit_type
    ORDER BY s.url_digest, s.visit_type
    FOR UPDATE OF s;

    -- Fold the results of each origin in visit date order into its stats.
    FOR r IN
        SELECT
            i.url, i.visit_type, i.status, i.visit_date, i.snapshot,
            scheduler.url_digest(i.url) AS digest,
            s.url IS NOT NULL AS known,
            s.last_successful, s.last_visit, s.last_visit_status, s.last_snapshot,
            s.next_position_offset, s.successive_visits,
            q.position AS queue_position, i.ord
        FROM unnest(
            urls, visit_types, statuses,
            coalesce(visit_dates, array_fill(NULL::timestamptz, ARRAY[n])),
            coalesce(snapshots, array_fill(NULL::bytea, ARRAY[n]))
        ) WITH ORDINALITY AS i (url, visit_type, status, visit_date, snapshot, ord)
        LEFT JOIN scheduler.origin_visit_stats AS s
            ON s.url_digest = scheduler.url_digest(i.url) AND s.visit_type = i.visit_type
        LEFT JOIN scheduler.visit_scheduler_queue_position AS q
            ON q.visit_type = i.visit_type
        -- A last row of nulls closes the last origin.
        UNION ALL
        SELECT
            NULL, NULL, NULL, NULL, NULL, NULL, FALSE, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL
        -- origin, then visit date (none: now, so last), then input order
        ORDER BY 6 NULLS LAST, 2, 4, 15
    LOOP
        IF cur_digest IS DISTINCT FROM r.digest OR cur_type IS DISTINCT FROM r.visit_type THEN
            IF cur_digest IS NOT NULL THEN
                o_urls := o_urls || cur_url;
                o_types := o_types || cur_type;
                o_successful := o_successful || st_successful;
                o_visit := o_visit || st_visit;
                o_status := o_status || st_status;
                o_snapshot := o_snapshot || st_snapshot;
                o_offset := o_offset || st_offset;
                o_successive := o_successive || st_successive;
                o_position := o_position || CASE WHEN st_applied THEN
                    scheduler.next_visit_queue_position(cur_queue, st_offset, cur_digest)
                END;
            END IF;
            EXIT WHEN r.digest IS NULL;
            cur_digest := r.digest;
            cur_type := r.visit_type;
            cur_url := r.url;
            cur_queue := r.queue_position;
            st_successful := r.last_successful;
            st_visit := r.last_visit;
            st_status := r.last_visit_status;
            st_snapshot := r.last_snapshot;
            st_offset := CASE WHEN r.known THEN r.next_position_offset ELSE 4 END;
            st_successive := CASE WHEN r.known THEN r.successive_visits ELSE 0 END;
            st_applied := false;
        END IF;

        v_date := coalesce(r.visit_date, now());
        IF st_visit IS NOT NULL AND v_date < st_visit THEN
            -- Older than the last recorded visit: it only tells of a success,
            -- and moves nothing in the queue.
            IF r.status = 'successful' THEN
                st_successful := greatest(st_successful, v_date);
            END IF;
            CONTINUE;
        END IF;

        IF r.status = 'successful' AND st_snapshot IS DISTINCT FROM r.snapshot THEN
            -- Eventful: something changed, come back sooner.
            st_offset := greatest(st_offset - 1, 0);
            st_successive := 1;
            st_snapshot := r.snapshot;
        ELSE
            -- Uneventful, failed or not_found: come back later.
            st_offset := least(st_offset + 1, 8);
            st_successive := CASE
                WHEN st_status IS NOT DISTINCT FROM r.status THEN st_successive + 1
                ELSE 1
            END;
        END IF;
        IF r.status = 'successful' THEN
            st_successful := greatest(st_successful, v_date);
        END IF;
        st_visit := v_date;
        st_status := r.status;
        st_applied := true;
    END LOOP;

    -- The same write path as every other writer of visit statistics (its
    -- trigger copies them into listed_origins).
    PERFORM scheduler.origin_visit_stats_upsert(
        urls => o_urls,
        visit_types => o_types,
        last_successful => o_successful,
        last_visit => o_visit,
        last_visit_status => o_status,
        last_snapshot => o_snapshot,
        next_visit_queue_position => o_position,
        next_position_offset => o_offset,
        successive_visits => o_successive
    );

    RETURN QUERY
    SELECT s.*
    FROM scheduler.origin_visit_stats_get(o_urls, o_types) AS s;
END
$$;

COMMENT ON FUNCTION {{ schema }}.record_visit_results(
    text[], text[], {{ schema }}.last_visit_status[], timestamptz[], bytea[]
) IS
'Record visit results given as parallel arrays (url, visit_type, status, visit date default '
'now, snapshot required when successful), oldest first per origin: last_visit, status, '
'last_successful, last_snapshot, successive_visits (visits in a row with the same status '
'since the snapshot last changed), '
'next_position_offset (-1 on a new snapshot, +1 otherwise, within 0..8) and '
'next_visit_queue_position (see next_visit_queue_position), written through '
'origin_visit_stats_upsert. A result older than the stored last_visit only updates '
'last_successful (and leaves the queue position). Returns the stored stats, one row per origin';
