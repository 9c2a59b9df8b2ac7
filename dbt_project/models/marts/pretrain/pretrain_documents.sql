-- One row per document the pretraining feed reads: the latest version of every document source and every
-- rendered warehouse row, tombstones included, with the content hash the feed uses to skip unchanged documents.
select
    doc_id,
    source,
    text,
    content_hash,
    is_deleted
from {{ ref('int_documents__latest') }}
union all by name
select doc_id, source, text, content_hash, is_deleted from {{ ref('int_warehouse__documents') }}
