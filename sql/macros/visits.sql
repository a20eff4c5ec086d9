{#- Macros of grab_next_visits. -#}

{#- What each visit policy selects and how it orders it.  The order of
    each policy is the key order of its index in 0001_schema.sql, so the
    scan stops after `count` rows instead of sorting the table. -#}
{% set visit_policies = {
    'oldest_scheduled_first': {
        'where': 'TRUE',
        'order': 'lo.last_scheduled NULLS FIRST',
    },
    'never_visited_oldest_update_first': {
        'where': 'NOT lo.snapshot_known AND lo.last_update IS NOT NULL',
        'order': 'lo.last_update',
    },
    'already_visited_order_by_lag': {
        'where': 'lo.snapshot_known AND lo.last_update > lo.last_successful',
        'order': '(lo.last_update - lo.last_successful) DESC',
    },
    'origins_without_last_update': {
        'where': 'lo.last_update IS NULL',
        'order': 'lo.next_visit_queue_position NULLS FIRST, lo.first_seen',
    },
    'first_visits_after_listing': {
        'where': '(lo.last_scheduled IS NULL OR lo.last_scheduled < listing_finished)',
        'order': 'lo.last_scheduled NULLS FIRST',
    },
} %}

{#- The candidate query of one policy: enabled (or disabled) origins of the
    visit type, of the lister when one is given, that no cooldown holds
    back, in policy order; locked, skipping rows other callers hold. -#}
{% macro visit_candidates(policy, sampled) -%}
SELECT lo.lister_id, lo.url_digest, lo.url
FROM scheduler.listed_origins AS lo
{%- if sampled %} TABLESAMPLE SYSTEM (sample_pct){% endif %}
WHERE
    lo.visit_type = grab_next_visits.visit_type
    AND lo.enabled = grab_next_visits.enabled
    AND (lister IS NULL OR lo.lister_id = lister)
    AND {{ visit_policies[policy]['where'] }}
    AND scheduler.visit_cooldown_passed(
        lo.last_scheduled, lo.last_visit, lo.last_visit_status, now_ts,
        absolute_cooldown, scheduled_cooldown, failed_cooldown, not_found_cooldown
    )
ORDER BY {{ visit_policies[policy]['order'] }}
LIMIT grab_next_visits.count
FOR UPDATE OF lo SKIP LOCKED
{%- endmacro %}
