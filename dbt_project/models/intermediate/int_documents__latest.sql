-- The newest version of every document from every documents source; tombstones kept (is_deleted = true).
select *
from {{ ref('stg_bronze__documents') }}
qualify row_number() over (partition by doc_id order by doc_version desc) = 1
