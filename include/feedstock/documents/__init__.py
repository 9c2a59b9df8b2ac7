"""Document ingestion: parse files of many formats into text, incrementally, into ``bronze.documents.<source>``."""
