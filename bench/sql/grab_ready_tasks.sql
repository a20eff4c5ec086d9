-- Bare call under PostgresScheduler.grab_ready_tasks (shim overhead, EXPLAIN).
SELECT * FROM scheduler.grab_ready_tasks(
    task_type => %(task_type)s, ts => %(timestamp)s, num_tasks => %(num_tasks)s
)
