-- Warehouse rows rendered as documents through each source's `document` templates in the feedstock config.
-- A row deleted at the source (_op = 'delete') becomes a tombstone.
{%- set renderings = feedstock_warehouse_documents() %}
{%- for r in renderings %}
select
    '{{ r.source }}/' || cast({{ adapter.quote(r.key) }} as varchar) as doc_id,
    '{{ r.source }}' as source,
    'warehouse://{{ r.source }}/' || cast({{ adapter.quote(r.key) }} as varchar) as uri,
    {{ render_template(r.title) if r.title else "null" }} as title,
    {{ render_template(r.text) }} as text,
    'text/plain' as mime_type,
    md5({{ render_template(r.text) }}) as content_hash,
    _ingested_at as updated_at,
    _op = 'delete' as is_deleted,
    null::varchar as pages_json,
    {{ "'" ~ r.access_tags | join(',') ~ "'" }} as access_tags
from {{ ref('stg_' ~ r.source ~ '__' ~ r.source) }}
{%- if r.where %}
where ({{ r.where }}) or _op = 'delete'
{%- endif %}
{% if not loop.last %}union all{% endif %}
{%- endfor %}
{%- if not renderings %}
select null::varchar as doc_id, null::varchar as source, null::varchar as uri, null::varchar as title,
    null::varchar as text, null::varchar as mime_type, null::varchar as content_hash,
    null::timestamptz as updated_at, null::boolean as is_deleted, null::varchar as pages_json,
    null::varchar as access_tags
where false
{%- endif %}
