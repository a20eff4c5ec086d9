-- Bare call under PostgresScheduler.start_task_run (shim overhead of a small call).
SELECT * FROM scheduler.start_task_run(
    backend_id => %(backend_id)s, metadata => %(metadata)s, ts => %(timestamp)s
)
