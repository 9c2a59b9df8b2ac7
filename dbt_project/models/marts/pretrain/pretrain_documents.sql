-- One row per document the pretraining feed reads, tombstones included, with the content hash the feed uses to
-- skip unchanged documents.
select
    doc_id,
    source,
    text,
    content_hash,
    is_deleted
from {{ ref('int_documents__unioned') }}
