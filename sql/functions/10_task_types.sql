-- Task types.

CREATE FUNCTION {{ schema }}.create_task_type(
    type text,
    description text,
    backend_name text,
    default_interval interval DEFAULT NULL,
    min_interval interval DEFAULT NULL,
    max_interval interval DEFAULT NULL,
    backoff_factor double precision DEFAULT NULL,
    max_queue_length bigint DEFAULT 1000,
    num_retries bigint DEFAULT NULL,
    retry_delay interval DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM scheduler.check_label('task_type.type', create_task_type.type);
    IF create_task_type.backoff_factor IS NOT NULL
        AND NOT (create_task_type.backoff_factor > 0
                 AND create_task_type.backoff_factor < 'Infinity') THEN
        PERFORM scheduler.raise_invalid('task_type.backoff_factor', format(
            'must be a positive finite number, got %s', create_task_type.backoff_factor));
    END IF;
    PERFORM scheduler.check_interval('task_type.default_interval', default_interval);
    PERFORM scheduler.check_interval('task_type.min_interval', min_interval);
    PERFORM scheduler.check_interval('task_type.max_interval', max_interval);
    PERFORM scheduler.check_interval('task_type.retry_delay', retry_delay, true);
    IF create_task_type.min_interval > create_task_type.max_interval THEN
        PERFORM scheduler.raise_invalid('task_type.min_interval', 'must not exceed max_interval');
    END IF;
    IF create_task_type.num_retries < 0 THEN
        PERFORM scheduler.raise_invalid('task_type.num_retries', 'must not be negative');
    END IF;
    IF create_task_type.max_queue_length < 0 THEN
        PERFORM scheduler.raise_invalid('task_type.max_queue_length', 'must not be negative');
    END IF;
    INSERT INTO scheduler.task_type AS tt (
        type, description, backend_name, default_interval, min_interval, max_interval,
        backoff_factor, max_queue_length, num_retries, retry_delay
    ) VALUES (
        create_task_type.type, create_task_type.description, create_task_type.backend_name,
        create_task_type.default_interval, create_task_type.min_interval,
        create_task_type.max_interval, create_task_type.backoff_factor,
        create_task_type.max_queue_length, create_task_type.num_retries,
        create_task_type.retry_delay
    )
    ON CONFLICT ON CONSTRAINT task_type_pkey DO NOTHING;
END
$$;

COMMENT ON FUNCTION {{ schema }}.create_task_type(
    text, text, text, interval, interval, interval, double precision, bigint, bigint, interval
) IS
'Store a task type; an existing type of that name is left unchanged';

CREATE FUNCTION {{ schema }}.get_task_types(names text[] DEFAULT NULL)
RETURNS SETOF {{ schema }}.task_type
LANGUAGE sql
STABLE
BEGIN ATOMIC
    SELECT tt.*
    FROM {{ schema }}.task_type AS tt
    WHERE get_task_types.names IS NULL OR tt.type = ANY(get_task_types.names)
    ORDER BY tt.type;
END;

COMMENT ON FUNCTION {{ schema }}.get_task_types(text[]) IS
'Task types by name (all of them when names is null), ordered by name';
