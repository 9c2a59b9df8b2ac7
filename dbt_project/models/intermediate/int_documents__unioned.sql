-- Every document the feeds read: the latest version of each file-based document and every rendered warehouse
-- row, tombstones included so that deletions reach the feeds. Shared by the RAG and pretraining marts.
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
    pages,
    access_tags
from {{ ref('int_documents__latest') }}
union all by name
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
    null as pages,
    access_tags
from {{ ref('stg_bronze__warehouse_documents') }}
