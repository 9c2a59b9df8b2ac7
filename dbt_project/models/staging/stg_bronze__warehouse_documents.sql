-- One row per warehouse row rendered as a document (doc_id = <source>/<key>), from every templated source.
select
    doc_id,
    source,
    uri,
    title,
    text,
    mime_type,
    content_hash,
    ingested_at,
    is_deleted,
    access_tags
from {{ source('bronze', 'warehouse_documents') }}
