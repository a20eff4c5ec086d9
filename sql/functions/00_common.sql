-- Helpers shared by the functions of the scheduler schema.

-- Every "bad argument" error goes through here, so that they all carry
-- SQLSTATE 22023 and a message that starts with the argument's name (the
-- shim turns them into ValueError, the RPC server into a 400).
CREATE FUNCTION {{ schema }}.raise_invalid(argument text, problem text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'invalid_parameter_value',
        MESSAGE = argument || ': ' || problem;
END
$$;

COMMENT ON FUNCTION {{ schema }}.raise_invalid(text, text) IS
'Raise SQLSTATE 22023 with message "<argument>: <problem>"';

-- Validation of a row count argument (count, limit, num_tasks): null allowed
-- where the caller says so, never negative, never above the hard ceiling.
CREATE FUNCTION {{ schema }}.check_count(
    argument text, value bigint, allow_null boolean DEFAULT TRUE, allow_zero boolean DEFAULT TRUE
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF value IS NULL THEN
        IF NOT allow_null THEN
            PERFORM scheduler.raise_invalid(argument, 'must not be null');
        END IF;
    ELSIF value < 0 THEN
        PERFORM scheduler.raise_invalid(argument, format('must not be negative, got %s', value));
    ELSIF value = 0 AND NOT allow_zero THEN
        PERFORM scheduler.raise_invalid(argument, 'must be at least 1');
    ELSIF value > 1000000 THEN
        PERFORM scheduler.raise_invalid(
            argument, format('must be at most 1000000, got %s', value)
        );
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.check_count(text, bigint, boolean, boolean) IS
'Reject a negative (or, when asked, null or zero) count, or one above 1000000';

-- Intervals given by callers (task type intervals, cooldowns): positive
-- (or zero, where allowed) and at most a century, so that adding them to a
-- timestamp never leaves PostgreSQL's range.
CREATE FUNCTION {{ schema }}.check_interval(
    argument text, value interval, allow_zero boolean DEFAULT FALSE
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF value IS NULL THEN
        RETURN;
    ELSIF value < interval '0' OR (value = interval '0' AND NOT allow_zero) THEN
        PERFORM scheduler.raise_invalid(argument, format('must be positive, got %s', value));
    ELSIF value > interval '100 years' THEN
        PERFORM scheduler.raise_invalid(argument, format('must be at most 100 years, got %s', value));
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.check_interval(text, interval, boolean) IS
'Raise 22023 naming the argument unless the interval is null, or positive (or zero when '
'allowed) and at most 100 years';

-- Names used as keys (visit types, lister names, task types): short enough
-- for any index entry.
CREATE FUNCTION {{ schema }}.check_label(
    argument text, value text, allow_empty boolean DEFAULT FALSE
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF value IS NULL OR (value = '' AND NOT allow_empty) THEN
        PERFORM scheduler.raise_invalid(argument, 'must be a non-empty string');
    ELSIF octet_length(value) > 255 THEN
        PERFORM scheduler.raise_invalid(argument, format(
            'longer than the 255-byte limit (%s bytes)', octet_length(value)));
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.check_label(text, text, boolean) IS
'Raise 22023 naming the argument unless the name is a string of 1 (or 0 when allowed) to '
'255 bytes';

-- JSON maps (extra loader arguments, lister state, run metadata) must be
-- JSON objects: the models hold them as dicts.
CREATE FUNCTION {{ schema }}.check_objects(argument text, maps jsonb[])
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM unnest(maps) AS v (value)
        WHERE v.value IS NOT NULL AND jsonb_typeof(v.value) <> 'object'
    ) THEN
        PERFORM scheduler.raise_invalid(argument, 'must be a JSON object');
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.check_objects(text, jsonb[]) IS
'Raise 22023 naming the argument unless every non-null value is a JSON object';

-- Batch functions take one array per column: they must agree in length.
-- A null length (an optional column left out) is not compared.
CREATE FUNCTION {{ schema }}.check_lengths(argument text, lengths integer[])
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF (SELECT count(DISTINCT x) FROM unnest(lengths) AS x) > 1 THEN
        PERFORM scheduler.raise_invalid(argument, format(
            'the column arrays differ in length (%s)', array_to_string(lengths, ', ', 'absent')));
    END IF;
END
$$;

COMMENT ON FUNCTION {{ schema }}.check_lengths(text, integer[]) IS
'Raise 22023 naming the argument unless the non-null lengths are all equal';

-- The four cooldowns of grab_next_visits, as one predicate on an origin's
-- visit statistics.  Inlined by the planner into each policy's query; a
-- null cooldown disables that rule.
CREATE FUNCTION {{ schema }}.visit_cooldown_passed(
    last_scheduled timestamptz,
    last_visit timestamptz,
    last_visit_status {{ schema }}.last_visit_status,
    ts timestamptz,
    absolute_cooldown interval,
    scheduled_cooldown interval,
    failed_cooldown interval,
    not_found_cooldown interval
)
RETURNS boolean
LANGUAGE sql
STABLE PARALLEL SAFE
-- Each rule compares one "cooldown key" of the row with ts - cooldown; the
-- keys are written exactly as the policy indexes of 0001_schema.sql hold
-- them (their last four columns), so that the planner checks them inside
-- the index.
RETURN
(
    absolute_cooldown IS NULL
    OR coalesce(last_scheduled, '-infinity'::timestamptz) <= ts - absolute_cooldown
)
AND (
    scheduled_cooldown IS NULL
    OR CASE
        WHEN last_scheduled > coalesce(last_visit, '-infinity'::timestamptz)
            THEN last_scheduled
        ELSE '-infinity'::timestamptz
    END <= ts - scheduled_cooldown
)
AND (
    failed_cooldown IS NULL
    OR CASE
        WHEN last_visit_status = 'failed'::{{ schema }}.last_visit_status
            THEN coalesce(last_visit, '-infinity'::timestamptz)
        ELSE '-infinity'::timestamptz
    END <= ts - failed_cooldown
)
AND (
    not_found_cooldown IS NULL
    OR CASE
        WHEN last_visit_status = 'not_found'::{{ schema }}.last_visit_status
            THEN coalesce(last_visit, '-infinity'::timestamptz)
        ELSE '-infinity'::timestamptz
    END <= ts - not_found_cooldown
);

COMMENT ON FUNCTION {{ schema }}.visit_cooldown_passed(
    timestamptz,
    timestamptz,
    {{ schema }}.last_visit_status,
    timestamptz,
    interval,
    interval,
    interval,
    interval
) IS
'True when none of the cooldowns of grab_next_visits holds the origin back at ts';
