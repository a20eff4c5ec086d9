{#- Macros shared by the task functions. -#}

{#- True when stored task `t` is the same task as input `i` for create_tasks:
    equal type, arguments, policy, priority and status, and for oneshot
    tasks equal next_run. -#}
{% macro same_task(t, i) -%}
{{ t }}.type = {{ i }}.type
AND {{ t }}.arguments = {{ i }}.arguments
AND {{ t }}.policy = {{ i }}.policy
AND {{ t }}.priority IS NOT DISTINCT FROM {{ i }}.priority
AND {{ t }}.status = {{ i }}.status
AND ({{ i }}.policy = 'recurring' OR {{ t }}.next_run = {{ i }}.next_run)
{%- endmacro %}

{#- The ready-task selection of peek_ready_tasks and grab_ready_tasks (and of
    their priority variants): tasks of one type, not yet scheduled, due at
    ts, in the order they are served, at most num_tasks of them.  The
    claim variant locks what it reads and skips what others hold. -#}
{% macro ready_tasks(with_priority, claim) -%}
SELECT t.id
FROM scheduler.task AS t
WHERE
    t.type = task_type
    AND t.status = 'next_run_not_scheduled'
    AND t.priority IS {{ 'NOT ' if with_priority }}NULL
    AND t.next_run <= coalesce(ts, now())
ORDER BY {{ 't.priority, ' if with_priority }}t.next_run, t.id
LIMIT num_tasks
{%- if claim %}
FOR UPDATE SKIP LOCKED
{%- endif %}
{%- endmacro %}
