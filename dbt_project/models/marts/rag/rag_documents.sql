-- One row per document the RAG feed reads: every document source's latest version and every rendered warehouse
-- row, tombstones included so that deletions reach the index.
{%- set tags = feedstock_access_tags() %}
select
    doc_id,
    source,
    uri,
    coalesce(title, doc_id) as title,
    text,
    mime_type,
    content_hash,
    ingested_at as updated_at,
    is_deleted,
    cast(to_json(pages) as varchar) as pages_json,
    {%- if tags %}
    case source
        {%- for source, source_tags in tags.items() %}
        when '{{ source }}' then '{{ source_tags | join(",") }}'
        {%- endfor %}
        else ''
    end as access_tags
    {%- else %}
    '' as access_tags
    {%- endif %}
from {{ ref('int_documents__latest') }}
union all by name
select * from {{ ref('int_warehouse__documents') }}
