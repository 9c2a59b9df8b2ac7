-- One row per version of each document, from every documents source.
select
    doc_id,
    source,
    uri,
    title,
    text,
    mime_type,
    content_hash,
    size_bytes,
    modified_at,
    ingested_at,
    is_deleted,
    doc_version,
    pages,
    access_tags
from {{ source('bronze', 'documents') }}
