"""Configuration problems are one-line errors that name the source and the field."""

from __future__ import annotations

import pytest

from feedstock.config import ConfigError, DocumentSource, WarehouseSource, load_config, parse_config

DOCS = {"name": "handbook", "kind": "documents", "uri": "include/sample_data/handbook"}
WAREHOUSE = {"name": "tickets", "kind": "warehouse", "conn_id": "wh", "table": "t", "key": "id"}


def test_the_shipped_config_loads_and_points_at_the_sample_data():
    config = load_config()
    handbook = config.source("handbook")
    assert isinstance(handbook, DocumentSource)
    assert handbook.uri.endswith("include/sample_data/handbook")
    assert {s.kind for s in config.sources} == {"documents", "warehouse", "corpus"}
    assert config.source("crawl").uri.endswith("include/sample_data/corpus")


def test_issue_example_shape():
    config = parse_config(
        {
            "lake": "s3://bucket/prefix",
            "sources": [
                {**DOCS, "uri": "s3://bucket/docs", "include": ["**/*"]},
                {**WAREHOUSE, "table": "public.tickets", "key": "ticket_id", "watermark": "updated_at"},
            ],
        }
    )
    assert config.lake == "s3://bucket/prefix"
    assert config.source("handbook").uri == "s3://bucket/docs"
    tickets = config.source("tickets")
    assert isinstance(tickets, WarehouseSource) and tickets.watermark == "updated_at"


def test_lake_env_overrides(monkeypatch):
    monkeypatch.setenv("FEEDSTOCK_LAKE", "s3://other/lake")
    assert parse_config({"lake": "./data/lake", "sources": []}).lake == "s3://other/lake"


@pytest.mark.parametrize(
    "source, words",
    [
        ({**DOCS, "kind": "ftp"}, ["'handbook'", "'kind'"]),
        ({k: v for k, v in DOCS.items() if k != "uri"}, ["'handbook'", "'uri'"]),
        ({**DOCS, "colour": "red"}, ["'handbook'", "'colour'"]),
        ({**DOCS, "batch_size": 0}, ["'handbook'", "'batch_size'"]),
        ({k: v for k, v in WAREHOUSE.items() if k != "conn_id"}, ["'tickets'", "'conn_id'"]),
        ({**WAREHOUSE, "query": "select 1"}, ["'tickets'", "'table'", "'query'"]),
        ({**WAREHOUSE, "name": "Bad Name"}, ["'name'"]),
    ],
)
def test_bad_sources_name_the_source_and_field(source, words):
    with pytest.raises(ConfigError) as error:
        parse_config({"sources": [source]})
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_duplicate_names_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="used by two sources"):
        parse_config({"sources": [DOCS, DOCS]})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("sources: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
