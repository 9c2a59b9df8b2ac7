"""The generated dbt files match the shipped configuration, and the template unit test renders as dbt will."""

from __future__ import annotations

from feedstock import transform
from feedstock.config import load_config, parse_config


def test_committed_dbt_sources_match_the_config():
    assert transform.stale(load_config()) == []


def test_a_new_source_makes_the_files_stale(tmp_path):
    config = parse_config(
        {
            "sources": [
                {"name": "wiki", "kind": "documents", "uri": "/tmp"},
                {
                    "name": "orders",
                    "kind": "warehouse",
                    "conn_id": "wh",
                    "table": "orders",
                    "key": "id",
                    "document": {
                        "title": "Order {id}",
                        "text": "Order {id} for {customer}",
                        "where": "state = 'paid'",
                    },
                },
            ]
        }
    )
    files = transform.render(config)
    assert (
        "models/staging/stg_wiki__documents.sql" in files and "models/staging/stg_orders__orders.sql" in files
    )
    assert "bronze/documents/wiki" in files["models/staging/_sources.yml"]
    assert "'where': \"state = 'paid'\"" in files["macros/feedstock_sources.sql"]
    assert "renders_orders_rows_as_documents" in files["models/staging/_staging.yml"]
    assert "Order 7 for <customer>" in files["models/staging/_staging.yml"]
    assert transform.write(config, tmp_path) and transform.stale(config, tmp_path) == []
