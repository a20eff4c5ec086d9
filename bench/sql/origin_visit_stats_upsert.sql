-- Bare call under PostgresScheduler.origin_visit_stats_upsert (shim overhead):
-- parallel arrays, sent in binary.
SELECT scheduler.origin_visit_stats_upsert(
    urls => %(urls)b, visit_types => %(visit_types)b,
    last_successful => %(last_successful)b, last_visit => %(last_visit)b,
    last_visit_status => %(last_visit_status)b::text []::scheduler.last_visit_status [],
    last_scheduled => %(last_scheduled)b, last_snapshot => %(last_snapshot)b,
    next_visit_queue_position => %(next_visit_queue_position)b,
    next_position_offset => %(next_position_offset)b,
    successive_visits => %(successive_visits)b
)
