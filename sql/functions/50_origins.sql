-- Listed origins and visit statistics.
--
-- Lock order, which every writer of an origin follows so that concurrent
-- writers cannot deadlock: listed_origins rows first (in url_digest,
-- visit_type, lister_id order, or with SKIP LOCKED), then origin_visit_stats.

CREATE FUNCTION {{ schema }}.check_url(argument text, url text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF url IS NULL OR url = '' THEN
        PERFORM scheduler.raise_invalid(argument, 'must be a non-empty string');
    ELSIF octet_length(url) > 16384 THEN
        PERFORM scheduler.raise_invalid(argument, format(
            'longer than the 16384-byte limit (%s bytes): %s...',
            octet_length(url), left(url, 80)));
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.check_url(text, text) IS
'Raise 22023 naming the argument unless url is a non-empty string of at most 16 KiB';

-- The (url, visit_type) keys of a batch: urls as check_url wants them,
-- visit types non-empty.
CREATE FUNCTION {{ schema }}.check_origin_keys(argument text, urls text[], visit_types text[])
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    PERFORM scheduler.check_url(argument || '.url', u) FROM unnest(urls) AS u
    WHERE u IS NULL OR u = '' OR octet_length(u) > 16384;
    PERFORM scheduler.check_label(argument || '.visit_type', vt)
    FROM unnest(visit_types) AS vt
    WHERE vt IS NULL OR vt = '' OR octet_length(vt) > 255;
END
$$;

COMMENT ON FUNCTION {{ schema }}.check_origin_keys(text, text[], text[]) IS
'Raise 22023 naming the argument unless every url passes check_url and every visit type '
'is a non-empty string';

CREATE FUNCTION {{ schema }}.record_listed_origins(
    lister_ids uuid[],
    urls text[],
    visit_types text[],
    extra_loader_arguments jsonb[] DEFAULT NULL,
    last_updates timestamptz[] DEFAULT NULL,
    is_forks boolean[] DEFAULT NULL,
    forked_from_urls text[] DEFAULT NULL,
    enabled boolean[] DEFAULT NULL
)
RETURNS SETOF {{ schema }}.listed_origins
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(urls), 0);
    bad text;
BEGIN
    PERFORM scheduler.check_lengths('listed_origins', ARRAY[
        n, coalesce(cardinality(lister_ids), 0), coalesce(cardinality(visit_types), 0),
        cardinality(extra_loader_arguments), cardinality(last_updates), cardinality(is_forks),
        cardinality(forked_from_urls), cardinality(enabled)
    ]);
    IF n = 0 THEN
        RETURN;
    END IF;
    PERFORM scheduler.check_origin_keys('listed_origins', urls, visit_types);
    PERFORM scheduler.check_objects('listed_origins.extra_loader_arguments', extra_loader_arguments);
    PERFORM scheduler.check_url('listed_origins.forked_from_url', f)
    FROM unnest(forked_from_urls) AS f
    WHERE octet_length(f) > 16384;
    SELECT l::text INTO bad
    FROM (SELECT DISTINCT x FROM unnest(lister_ids) AS x) AS d (l)
    WHERE d.l IS NULL OR NOT EXISTS (SELECT 1 FROM scheduler.lister AS k WHERE k.id = d.l)
    LIMIT 1;
    IF FOUND THEN
        PERFORM scheduler.raise_invalid('listed_origins.lister_id',
            format('unknown lister %s', coalesce(bad, 'null')));
    END IF;

    RETURN QUERY
    WITH input AS (
        -- Duplicates inside the batch collapse; the last one wins.
        SELECT DISTINCT ON (i.digest, i.visit_type, i.lister_id) i.*
        FROM (
            SELECT x.*, scheduler.url_digest(x.url) AS digest
            FROM unnest(
                lister_ids, urls, visit_types,
                coalesce(extra_loader_arguments, array_fill(NULL::jsonb, ARRAY[n])),
                coalesce(last_updates, array_fill(NULL::timestamptz, ARRAY[n])),
                coalesce(is_forks, array_fill(NULL::boolean, ARRAY[n])),
                coalesce(forked_from_urls, array_fill(NULL::text, ARRAY[n])),
                coalesce(enabled, array_fill(NULL::boolean, ARRAY[n]))
            ) WITH ORDINALITY AS x (
                lister_id, url, visit_type, extra_loader_arguments, last_update,
                is_fork, forked_from_url, enabled, ord
            )
        ) AS i
        ORDER BY i.digest, i.visit_type, i.lister_id, i.ord DESC
    ),

    upserted AS (
        INSERT INTO scheduler.listed_origins AS lo (
            lister_id, url, url_digest, visit_type, extra_loader_arguments, last_update,
            is_fork, forked_from_url, enabled, last_scheduled, last_visit, last_successful,
            last_visit_status, snapshot_known, next_visit_queue_position
        )
        SELECT
            i.lister_id, i.url, i.digest, i.visit_type, coalesce(i.extra_loader_arguments, '{}'),
            i.last_update, i.is_fork, i.forked_from_url, coalesce(i.enabled, true),
            s.last_scheduled, s.last_visit, s.last_successful, s.last_visit_status,
            s.last_snapshot IS NOT NULL, s.next_visit_queue_position
        FROM input AS i
        -- Known shortcoming: a row inserted here while another transaction
        -- writes this origin's statistics keeps the copy read now (that
        -- writer's trigger cannot see the new row) until the next write of
        -- its statistics.
        LEFT JOIN scheduler.origin_visit_stats AS s
            ON s.url_digest = i.digest AND s.visit_type = i.visit_type
        ORDER BY i.digest, i.visit_type, i.lister_id
        ON CONFLICT ON CONSTRAINT listed_origins_key DO UPDATE
            SET
                extra_loader_arguments = excluded.extra_loader_arguments,
                last_update = excluded.last_update,
                is_fork = excluded.is_fork,
                forked_from_url = excluded.forked_from_url,
                enabled = excluded.enabled,
                last_seen = excluded.last_seen
        RETURNING lo.*
    )

    SELECT u.*
    FROM upserted AS u
    JOIN input AS i
        ON i.digest = u.url_digest AND i.visit_type = u.visit_type AND i.lister_id = u.lister_id
    ORDER BY i.ord;
END
$$;

COMMENT ON FUNCTION {{ schema }}.record_listed_origins(
    uuid[], text[], text[], jsonb[], timestamptz[], boolean[], text[], boolean[]
) IS
'Upsert listed origins given as parallel arrays, keyed on (lister_id, url, visit_type): '
'first_seen kept, last_seen now, the other fields replaced; duplicates in the batch collapse '
'(last wins). Returns the stored rows in input order';

{% set rest_of_lister %}
lo.lister_id = after_lister_id
AND left(lo.url, 500) >= left(after_url, 500) COLLATE "C"
AND (left(lo.url, 500), lo.url, lo.visit_type)
> (left(after_url, 500) COLLATE "C", after_url COLLATE "C", after_visit_type)
{% endset %}
{% set later_listers = 'lo.lister_id > after_lister_id' %}
CREATE FUNCTION {{ schema }}.get_listed_origins(
    lister_id uuid DEFAULT NULL,
    urls text[] DEFAULT NULL,
    enabled boolean DEFAULT TRUE,
    max_rows bigint DEFAULT 1000,
    after_lister_id uuid DEFAULT NULL,
    after_url text DEFAULT NULL,
    after_visit_type text DEFAULT NULL
)
RETURNS SETOF {{ schema }}.listed_origin_page_row
LANGUAGE plpgsql
STABLE
-- Planned with the actual arguments: the filters left null fold away, and
-- a page is an ordered scan of listed_origins_page_idx from the token on.
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    PERFORM scheduler.check_count('limit', max_rows, false, false);
    IF after_lister_id IS NULL THEN
        RETURN QUERY
        {{ listed_origins_page(['TRUE']) | indent(8) }};
    ELSE
        -- After the token: the rest of the token's lister, then the later
        -- listers.  Two index-ordered branches, each stopping early (one
        -- row comparison over all four keys would hide both from the
        -- planner's estimates).
        RETURN QUERY
        {{ listed_origins_page([rest_of_lister, later_listers]) | indent(8) }};
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.get_listed_origins(
    uuid, text[], boolean, bigint, uuid, text, text
) IS
'One page of listed origins matching the non-null filters, by lister, url, visit type. '
'The next page starts after the (lister_id, url, visit_type) of the last row, while has_more';

-- Keeps the copies of visit statistics in listed_origins equal to
-- origin_visit_stats.  Statement triggers, one UPDATE per statement.
CREATE FUNCTION {{ schema }}.copy_visit_stats_to_listed_origins()
RETURNS trigger
LANGUAGE plpgsql
-- The transition table has no statistics; without this the planner may
-- hash it against a sequential scan of all listed origins, where one
-- probe of listed_origins_key per changed row is what is wanted.
SET enable_seqscan = off
AS $$
BEGIN
    UPDATE scheduler.listed_origins AS lo
    SET
        last_scheduled = s.last_scheduled,
        last_visit = s.last_visit,
        last_successful = s.last_successful,
        last_visit_status = s.last_visit_status,
        snapshot_known = s.last_snapshot IS NOT NULL,
        next_visit_queue_position = s.next_visit_queue_position
    FROM changed_stats AS s
    WHERE
        lo.url_digest = s.url_digest
        AND lo.visit_type = s.visit_type
        AND (
            lo.last_scheduled, lo.last_visit, lo.last_successful, lo.last_visit_status,
            lo.snapshot_known, lo.next_visit_queue_position
        ) IS DISTINCT FROM (
            s.last_scheduled, s.last_visit, s.last_successful, s.last_visit_status,
            s.last_snapshot IS NOT NULL, s.next_visit_queue_position
        );
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION {{ schema }}.copy_visit_stats_to_listed_origins() IS
'Trigger: copy changed origin_visit_stats rows into the listed_origins rows of their origin';

CREATE OR REPLACE TRIGGER origin_visit_stats_inserted
AFTER INSERT ON {{ schema }}.origin_visit_stats
REFERENCING NEW TABLE AS changed_stats
FOR EACH STATEMENT
EXECUTE FUNCTION {{ schema }}.copy_visit_stats_to_listed_origins();

CREATE OR REPLACE TRIGGER origin_visit_stats_updated
AFTER UPDATE ON {{ schema }}.origin_visit_stats
REFERENCING NEW TABLE AS changed_stats
FOR EACH STATEMENT
EXECUTE FUNCTION {{ schema }}.copy_visit_stats_to_listed_origins();

CREATE FUNCTION {{ schema }}.origin_visit_stats_upsert(
    urls text[],
    visit_types text[],
    last_successful timestamptz[] DEFAULT NULL,
    last_visit timestamptz[] DEFAULT NULL,
    last_visit_status {{ schema }}.last_visit_status[] DEFAULT NULL,
    last_scheduled timestamptz[] DEFAULT NULL,
    last_snapshot bytea[] DEFAULT NULL,
    next_visit_queue_position bigint[] DEFAULT NULL,
    next_position_offset integer[] DEFAULT NULL,
    successive_visits integer[] DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(urls), 0);
    changed bigint;
    d_urls text [];
    d_visit_types text [];
    d_digests bytea [];
    d_last_successful timestamptz [];
    d_last_visit timestamptz [];
    d_last_visit_status scheduler.last_visit_status [];
    d_last_scheduled timestamptz [];
    d_last_snapshot bytea [];
    d_queue_position bigint [];
    d_position_offset integer [];
    d_successive_visits integer [];
BEGIN
    PERFORM scheduler.check_lengths('origin_visit_stats', ARRAY[
        n, coalesce(cardinality(visit_types), 0), cardinality(last_successful),
        cardinality(last_visit), cardinality(last_visit_status), cardinality(last_scheduled),
        cardinality(last_snapshot), cardinality(next_visit_queue_position),
        cardinality(next_position_offset), cardinality(successive_visits)
    ]);
    IF n = 0 THEN
        RETURN 0;
    END IF;
    PERFORM scheduler.check_origin_keys('origin_visit_stats', urls, visit_types);
    IF EXISTS (SELECT 1 FROM unnest(next_position_offset) AS o WHERE o < 0)
        OR EXISTS (SELECT 1 FROM unnest(successive_visits) AS v WHERE v < 0) THEN
        PERFORM scheduler.raise_invalid('origin_visit_stats.next_position_offset',
            'next_position_offset and successive_visits must not be negative');
    END IF;
    IF EXISTS (
        SELECT 1 FROM unnest(last_snapshot) AS s (snap) WHERE octet_length(s.snap) <> 20
    ) THEN
        PERFORM scheduler.raise_invalid('origin_visit_stats.last_snapshot',
            'must be a 20-byte hash');
    END IF;

    -- Duplicates inside the batch collapse; the last one wins.  The
    -- deduplicated batch is kept in arrays d_*, sorted in lock order.
    SELECT
        array_agg(x.url), array_agg(x.visit_type), array_agg(x.digest),
        array_agg(x.last_successful), array_agg(x.last_visit), array_agg(x.last_visit_status),
        array_agg(x.last_scheduled), array_agg(x.last_snapshot),
        array_agg(x.next_visit_queue_position), array_agg(x.next_position_offset),
        array_agg(x.successive_visits)
    INTO
        d_urls, d_visit_types, d_digests, d_last_successful, d_last_visit,
        d_last_visit_status, d_last_scheduled, d_last_snapshot, d_queue_position,
        d_position_offset, d_successive_visits
    FROM (
        SELECT DISTINCT ON (y.digest, y.visit_type) y.*
        FROM (
            SELECT z.*, scheduler.url_digest(z.url) AS digest
            FROM unnest(
                urls, visit_types,
                coalesce(last_successful, array_fill(NULL::timestamptz, ARRAY[n])),
                coalesce(last_visit, array_fill(NULL::timestamptz, ARRAY[n])),
                coalesce(
                    last_visit_status, array_fill(NULL::scheduler.last_visit_status, ARRAY[n])
                ),
                coalesce(last_scheduled, array_fill(NULL::timestamptz, ARRAY[n])),
                coalesce(last_snapshot, array_fill(NULL::bytea, ARRAY[n])),
                coalesce(next_visit_queue_position, array_fill(NULL::bigint, ARRAY[n])),
                coalesce(next_position_offset, array_fill(NULL::integer, ARRAY[n])),
                coalesce(successive_visits, array_fill(NULL::integer, ARRAY[n]))
            ) WITH ORDINALITY AS z (
                url, visit_type, last_successful, last_visit, last_visit_status,
                last_scheduled, last_snapshot, next_visit_queue_position,
                next_position_offset, successive_visits, ord
            )
        ) AS y
        ORDER BY y.digest, y.visit_type, y.ord DESC
    ) AS x;

    -- Lock order: the listed origins of these urls first (see the top).
    PERFORM 1
    FROM unnest(d_digests, d_visit_types) AS i (digest, visit_type)
    JOIN scheduler.listed_origins AS lo
        ON lo.url_digest = i.digest AND lo.visit_type = i.visit_type
    ORDER BY lo.url_digest, lo.visit_type, lo.lister_id
    FOR NO KEY UPDATE OF lo;

    INSERT INTO scheduler.origin_visit_stats AS s (
        url, url_digest, visit_type, last_successful, last_visit, last_visit_status,
        last_scheduled, last_snapshot, next_visit_queue_position, next_position_offset,
        successive_visits
    )
    SELECT
        i.url, i.digest, i.visit_type, i.last_successful, i.last_visit, i.last_visit_status,
        i.last_scheduled, i.last_snapshot, i.next_visit_queue_position,
        coalesce(i.next_position_offset, 4), coalesce(i.successive_visits, 1)
    FROM unnest(
        d_urls, d_digests, d_visit_types, d_last_successful, d_last_visit,
        d_last_visit_status, d_last_scheduled, d_last_snapshot, d_queue_position,
        d_position_offset, d_successive_visits
    ) AS i (
        url, digest, visit_type, last_successful, last_visit, last_visit_status,
        last_scheduled, last_snapshot, next_visit_queue_position, next_position_offset,
        successive_visits
    )
    ON CONFLICT ON CONSTRAINT origin_visit_stats_key DO UPDATE
        SET
            last_successful = coalesce(excluded.last_successful, s.last_successful),
            last_visit = coalesce(excluded.last_visit, s.last_visit),
            last_visit_status = coalesce(excluded.last_visit_status, s.last_visit_status),
            last_scheduled = coalesce(excluded.last_scheduled, s.last_scheduled),
            last_snapshot = coalesce(excluded.last_snapshot, s.last_snapshot),
            next_visit_queue_position
            = coalesce(excluded.next_visit_queue_position, s.next_visit_queue_position),
            next_position_offset = excluded.next_position_offset,
            successive_visits = excluded.successive_visits;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END
$$;

COMMENT ON FUNCTION {{ schema }}.origin_visit_stats_upsert(
    text[],
    text[],
    timestamptz[],
    timestamptz[],
    {{ schema }}.last_visit_status[],
    timestamptz[],
    bytea[],
    bigint[],
    integer[],
    integer[]
) IS
'Upsert visit statistics given as parallel arrays, keyed on (url, visit_type): a null keeps '
'the stored value. Returns the number of rows written';

CREATE FUNCTION {{ schema }}.origin_visit_stats_get(urls text[], visit_types text[])
RETURNS SETOF {{ schema }}.origin_visit_stats
LANGUAGE sql
STABLE
BEGIN ATOMIC
    SELECT s.*
    FROM
        unnest(origin_visit_stats_get.urls, origin_visit_stats_get.visit_types)
        WITH ORDINALITY AS i (url, visit_type, ord)
    INNER JOIN {{ schema }}.origin_visit_stats AS s
        ON s.url_digest = {{ schema }}.url_digest(i.url) AND i.visit_type = s.visit_type
    ORDER BY i.ord;
END;

COMMENT ON FUNCTION {{ schema }}.origin_visit_stats_get(text[], text[]) IS
'Visit statistics of the (url, visit_type) pairs given as two arrays, in input order; '
'unknown pairs are left out';

CREATE FUNCTION {{ schema }}.visit_scheduler_queue_position_get()
RETURNS TABLE (visit_type text, queue_position bigint)
LANGUAGE sql
STABLE
BEGIN ATOMIC
    SELECT
        q.visit_type,
        q.position
    FROM {{ schema }}.visit_scheduler_queue_position AS q
    ORDER BY q.visit_type;
END;

COMMENT ON FUNCTION {{ schema }}.visit_scheduler_queue_position_get() IS
'Queue position of the origins_without_last_update policy, per visit type';

CREATE FUNCTION {{ schema }}.visit_scheduler_queue_position_set(
    visit_type text, queue_position bigint
)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM scheduler.check_label('visit_type', visit_scheduler_queue_position_set.visit_type);
    IF queue_position IS NULL THEN
        PERFORM scheduler.raise_invalid('position', 'must not be null');
    END IF;
    INSERT INTO scheduler.visit_scheduler_queue_position AS q (visit_type, position)
    VALUES (
        visit_scheduler_queue_position_set.visit_type,
        queue_position
    )
    ON CONFLICT ON CONSTRAINT visit_scheduler_queue_position_pkey
    DO UPDATE SET position = excluded.position;
END
$$;

COMMENT ON FUNCTION {{ schema }}.visit_scheduler_queue_position_set(text, bigint) IS
'Set the queue position of a visit type';
