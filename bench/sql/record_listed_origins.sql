-- Bare call under PostgresScheduler.record_listed_origins (shim overhead):
-- parallel arrays, sent in binary.
SELECT * FROM scheduler.record_listed_origins(
    lister_ids => %(lister_ids)b, urls => %(urls)b, visit_types => %(visit_types)b,
    extra_loader_arguments => %(extra_loader_arguments)b, last_updates => %(last_updates)b,
    is_forks => %(is_forks)b, forked_from_urls => %(forked_from_urls)b,
    enabled => %(enabled)b
)
