-- One row per document the RAG feed reads, tombstones included so that deletions reach the index.
select
    doc_id,
    source,
    uri,
    title,
    text,
    mime_type,
    content_hash,
    updated_at,
    is_deleted,
    pages,
    access_tags
from {{ ref('int_documents__unioned') }}
