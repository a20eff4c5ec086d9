{#- Macros of the listed-origin functions. -#}

{#- Paging order of listed origins: lister, then url (a 500-character prefix
    first, as listed_origins_page_idx holds it), then visit type. -#}
{% macro page_order(alias) -%}
{{ alias }}.lister_id, left({{ alias }}.url, 500), {{ alias }}.url, {{ alias }}.visit_type
{%- endmacro %}

{#- One page of get_listed_origins: the origins matching the filters and one
    of the key conditions (one index-ordered branch each, stopping early),
    the first max_rows of them in paging order, each with has_more. -#}
{% macro listed_origins_page(conditions) -%}
SELECT
    p.lister_id, p.url, p.visit_type, p.extra_loader_arguments, p.last_update,
    p.is_fork, p.forked_from_url, p.enabled, p.first_seen, p.last_seen, p.has_more
FROM (
    SELECT
        q.*,
        lead(true, 1, false) OVER (ORDER BY {{ page_order('q') }}) AS has_more
    FROM (
{%- for condition in conditions %}
{%- if not loop.first %}
        UNION ALL
{%- endif %}
        (
            SELECT lo.*
            FROM scheduler.listed_origins AS lo
            WHERE
                ({{ condition | trim | indent(16) }})
                AND (
                    get_listed_origins.lister_id IS NULL
                    OR lo.lister_id = get_listed_origins.lister_id
                )
                AND (
                    urls IS NULL
                    OR lo.url_digest = ANY(
                        ARRAY(SELECT scheduler.url_digest(u.url) FROM unnest(urls) AS u (url))
                    )
                )
                AND (
                    get_listed_origins.enabled IS NULL
                    OR lo.enabled = get_listed_origins.enabled
                )
            ORDER BY {{ page_order('lo') }}
            LIMIT max_rows + 1
        )
{%- endfor %}
    ) AS q
) AS p
ORDER BY {{ page_order('p') }}
LIMIT max_rows
{%- endmacro %}
