-- One row per warehouse row rendered as a conversation (record_id = <source>/<key>), from every source with a
-- finetune template.
select
    record_id,
    source,
    system,
    prompt,
    response,
    content_hash,
    is_deleted
from {{ source('bronze', 'warehouse_conversations') }}
