-- Choosing the next visits.
{% set policies = [
    'oldest_scheduled_first',
    'never_visited_oldest_update_first',
    'already_visited_order_by_lag',
    'origins_without_last_update',
    'first_visits_after_listing',
] %}

CREATE FUNCTION {{ schema }}.grab_next_visits(
    visit_type text,
    count bigint,
    policy text,
    enabled boolean DEFAULT TRUE,
    lister_uuid uuid DEFAULT NULL,
    lister_name text DEFAULT NULL,
    lister_instance_name text DEFAULT NULL,
    ts timestamptz DEFAULT NULL,
    absolute_cooldown interval DEFAULT interval '12 hours',
    scheduled_cooldown interval DEFAULT interval '7 days',
    failed_cooldown interval DEFAULT interval '14 days',
    not_found_cooldown interval DEFAULT interval '31 days',
    tablesample double precision DEFAULT NULL
)
RETURNS SETOF {{ schema }}.listed_origins
LANGUAGE plpgsql
-- Plan each query with the actual arguments: the optional lister filter
-- then folds away and the policy's index is chosen.
SET plan_cache_mode = force_custom_plan
-- Every statement here reaches listed_origins by an index (the policy's,
-- or listed_origins_key for the chosen rows); arrays of chosen keys carry
-- no statistics, and a hash join over the whole table must not be chosen.
SET enable_seqscan = off
AS $$
DECLARE
    now_ts timestamptz := coalesce(ts, now());
    lister uuid := lister_uuid;
    sample_pct double precision := grab_next_visits.tablesample;
    listing_finished timestamptz;
    picked_listers uuid [];
    picked_digests bytea [];
    picked_urls text [];
    busy_digests bytea [];
    siblings bigint;
BEGIN
    IF policy IS NULL OR policy NOT IN (
{%- for p in policies %}'{{ p }}'{{ ', ' if not loop.last }}{% endfor -%}
    ) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PGS02',
            MESSAGE = format('policy: unknown visit policy %L', policy);
    END IF;
    PERFORM scheduler.check_label('visit_type', grab_next_visits.visit_type);
    PERFORM scheduler.check_count('count', grab_next_visits.count, false);
    PERFORM scheduler.check_interval('absolute_cooldown', absolute_cooldown, true);
    PERFORM scheduler.check_interval('scheduled_cooldown', scheduled_cooldown, true);
    PERFORM scheduler.check_interval('failed_cooldown', failed_cooldown, true);
    PERFORM scheduler.check_interval('not_found_cooldown', not_found_cooldown, true);
    IF grab_next_visits.enabled IS NULL THEN
        PERFORM scheduler.raise_invalid('enabled', 'must be true or false');
    END IF;
    IF sample_pct IS NOT NULL AND NOT (sample_pct > 0 AND sample_pct <= 100) THEN
        PERFORM scheduler.raise_invalid('tablesample',
            format('must be a percentage in (0, 100], got %s', sample_pct));
    END IF;
    IF lister IS NULL AND (lister_name IS NOT NULL OR lister_instance_name IS NOT NULL) THEN
        SELECT min(l.id::text)::uuid, count(*) INTO lister, siblings
        FROM scheduler.lister AS l
        WHERE
            (lister_name IS NULL OR l.name = lister_name)
            AND (lister_instance_name IS NULL OR l.instance_name = lister_instance_name);
        IF siblings = 0 THEN
            PERFORM scheduler.raise_invalid('lister_name', format(
                'no lister named %L with instance %L', lister_name, lister_instance_name));
        ELSIF siblings > 1 THEN
            PERFORM scheduler.raise_invalid('lister_name', format(
                '%s listers match name %L and instance %L; give lister_instance_name too',
                siblings, lister_name, lister_instance_name));
        END IF;
    END IF;
    IF lister IS NOT NULL THEN
        SELECT l.last_listing_finished_at INTO listing_finished
        FROM scheduler.lister AS l WHERE l.id = lister;
        IF NOT FOUND THEN
            PERFORM scheduler.raise_invalid('lister_uuid', format('unknown lister %s', lister));
        END IF;
    ELSIF policy = 'first_visits_after_listing' THEN
        PERFORM scheduler.raise_invalid('lister_uuid',
            'the first_visits_after_listing policy needs a lister '
            '(lister_uuid, or lister_name and lister_instance_name)');
    END IF;
    IF grab_next_visits.count = 0 THEN
        RETURN;
    END IF;

    -- 1. The candidates, in policy order, locked (SKIP LOCKED).
    CASE
{%- for policy in policies %}
{%- for sampled in [false, true] %}
    WHEN policy = '{{ policy }}' AND sample_pct IS {{ 'NOT ' if sampled }}NULL THEN
        SELECT array_agg(c.lister_id), array_agg(c.url_digest), array_agg(c.url)
        INTO picked_listers, picked_digests, picked_urls
        FROM (
            {{ visit_candidates(policy, sampled) | indent(12) }}
        ) AS c;
{%- endfor %}
{%- endfor %}
    END CASE;
    IF picked_digests IS NULL THEN
        RETURN;
    END IF;

    -- 2. One origin (url, visit type) may be listed by several listers.
    -- Keep the first row of each origin, and claim the rows of the other
    -- listers too; an origin one of whose rows another caller holds is
    -- that caller's, and is dropped.  Nothing to do when a single lister
    -- lists origins of this visit type (one probe per lister tells).
    SELECT count(*) INTO siblings
    FROM scheduler.lister AS l
    WHERE EXISTS (
        SELECT 1
        FROM scheduler.listed_origins AS lo
        WHERE lo.lister_id = l.id AND lo.visit_type = grab_next_visits.visit_type
    );
    IF siblings > 1 THEN
        SELECT
            array_agg(p.lister_id ORDER BY p.ord),
            array_agg(p.url_digest ORDER BY p.ord),
            array_agg(p.url ORDER BY p.ord)
        INTO picked_listers, picked_digests, picked_urls
        FROM (
            SELECT DISTINCT ON (u.url_digest) u.*
            FROM unnest(picked_listers, picked_digests, picked_urls) WITH ORDINALITY AS u (
                lister_id, url_digest, url, ord
            )
            ORDER BY u.url_digest, u.ord
        ) AS p;
        SELECT count(*) INTO siblings
        FROM scheduler.listed_origins AS lo
        WHERE
            lo.url_digest = ANY(picked_digests)
            AND lo.visit_type = grab_next_visits.visit_type;
    ELSE
        siblings := 0;
    END IF;
    IF siblings > cardinality(picked_digests) THEN
        WITH locked AS (
            SELECT lo.url_digest, lo.lister_id
            FROM scheduler.listed_origins AS lo
            WHERE
                lo.url_digest = ANY(picked_digests)
                AND lo.visit_type = grab_next_visits.visit_type
                AND (lo.url_digest, lo.lister_id) NOT IN (
                    SELECT u.url_digest, u.lister_id
                    FROM unnest(picked_digests, picked_listers) AS u (url_digest, lister_id)
                )
            FOR UPDATE OF lo SKIP LOCKED
        )
        SELECT array_agg(DISTINCT lo.url_digest) INTO busy_digests
        FROM scheduler.listed_origins AS lo
        WHERE
            lo.url_digest = ANY(picked_digests)
            AND lo.visit_type = grab_next_visits.visit_type
            AND (lo.url_digest, lo.lister_id) NOT IN (
                SELECT k.url_digest, k.lister_id FROM locked AS k
            )
            AND (lo.url_digest, lo.lister_id) NOT IN (
                SELECT u.url_digest, u.lister_id
                FROM unnest(picked_digests, picked_listers) AS u (url_digest, lister_id)
            );
        IF busy_digests IS NOT NULL THEN
            SELECT
                array_agg(p.lister_id ORDER BY p.ord),
                array_agg(p.url_digest ORDER BY p.ord),
                array_agg(p.url ORDER BY p.ord)
            INTO picked_listers, picked_digests, picked_urls
            FROM unnest(picked_listers, picked_digests, picked_urls) WITH ORDINALITY AS p (
                lister_id, url_digest, url, ord
            )
            WHERE NOT p.url_digest = ANY(busy_digests);
            IF picked_digests IS NULL THEN
                RETURN;
            END IF;
        END IF;
    END IF;

    -- 3. Record the scheduling (last_scheduled never moves backwards); the
    -- stats trigger copies it into every listed row of these origins.
    INSERT INTO scheduler.origin_visit_stats AS s (url, url_digest, visit_type, last_scheduled)
    SELECT p.url, p.url_digest, grab_next_visits.visit_type, now_ts
    FROM unnest(picked_urls, picked_digests) AS p (url, url_digest)
    ORDER BY p.url_digest
    ON CONFLICT ON CONSTRAINT origin_visit_stats_key DO UPDATE
        SET last_scheduled = greatest(s.last_scheduled, excluded.last_scheduled);

    IF policy = 'origins_without_last_update' THEN
        INSERT INTO scheduler.visit_scheduler_queue_position AS q (visit_type, position)
        SELECT grab_next_visits.visit_type, max(lo.next_visit_queue_position)
        FROM unnest(picked_listers, picked_digests) AS p (lister_id, url_digest)
        JOIN scheduler.listed_origins AS lo
            ON
                lo.url_digest = p.url_digest
                AND lo.visit_type = grab_next_visits.visit_type
                AND lo.lister_id = p.lister_id
        HAVING max(lo.next_visit_queue_position) IS NOT NULL
        ON CONFLICT ON CONSTRAINT visit_scheduler_queue_position_pkey
        DO UPDATE SET position = greatest(q.position, excluded.position);
    END IF;

    -- 4. The chosen origins, in policy order.
    RETURN QUERY
    SELECT lo.*
    FROM unnest(picked_listers, picked_digests) WITH ORDINALITY AS p (lister_id, url_digest, ord)
    JOIN scheduler.listed_origins AS lo
        ON
            lo.url_digest = p.url_digest
            AND lo.visit_type = grab_next_visits.visit_type
            AND lo.lister_id = p.lister_id
    ORDER BY p.ord;
END
$$;

COMMENT ON FUNCTION {{ schema }}.grab_next_visits(
    text,
    bigint,
    text,
    boolean,
    uuid,
    text,
    text,
    timestamptz,
    interval,
    interval,
    interval,
    interval,
    double precision
) IS
'Choose up to count origins of a visit type to visit next under a policy '
'(oldest_scheduled_first, never_visited_oldest_update_first, already_visited_order_by_lag, '
'origins_without_last_update, first_visits_after_listing), honouring the cooldowns (null '
'disables one), and record last_scheduled = ts for them. Concurrent callers never get the '
'same origin. Unknown policy: SQLSTATE PGS02';
