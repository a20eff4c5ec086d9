-- Bare call under PostgresScheduler.grab_next_visits (shim overhead, EXPLAIN).
SELECT * FROM scheduler.grab_next_visits(
    visit_type => %(visit_type)s, count => %(count)s, policy => %(policy)s,
    enabled => %(enabled)s, lister_uuid => %(lister_uuid)s, lister_name => %(lister_name)s,
    lister_instance_name => %(lister_instance_name)s, ts => %(timestamp)s,
    absolute_cooldown => %(absolute_cooldown)s, scheduled_cooldown => %(scheduled_cooldown)s,
    failed_cooldown => %(failed_cooldown)s, not_found_cooldown => %(not_found_cooldown)s,
    tablesample => %(tablesample)s
)
