-- The newest version of every document from every document source; tombstones kept (is_deleted = true).
{%- set sources = feedstock_document_sources() %}
with versions as (
    {%- for source in sources %}
    select * from {{ ref('stg_' ~ source ~ '__documents') }}
    {% if not loop.last %}union all by name{% endif %}
    {%- endfor %}
    {%- if not sources %}
    select null::varchar as doc_id, null::bigint as doc_version where false
    {%- endif %}
)
select *
from versions
qualify row_number() over (partition by doc_id order by doc_version desc) = 1
