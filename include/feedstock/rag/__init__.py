"""The RAG feed: chunk documents, embed only what changed, keep a LanceDB index, search it, score it."""
