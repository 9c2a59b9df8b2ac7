-- One row per conversation the fine-tuning feed reads from the warehouse, tombstones included: the chat messages
-- as a typed list of {role, content} structs, with the system turn only where the template has one.
select
    record_id,
    source,
    case
        when system is null then [
            {'role': 'user', 'content': prompt},
            {'role': 'assistant', 'content': response}
        ]
        else [
            {'role': 'system', 'content': system},
            {'role': 'user', 'content': prompt},
            {'role': 'assistant', 'content': response}
        ]
    end as messages,
    content_hash,
    is_deleted
from {{ ref('stg_bronze__warehouse_conversations') }}
