"""Configuration problems are one-line errors that name the source and the field.

A problem at the top level fails the load; a problem inside one source only breaks that source.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from feedstock import cli
from feedstock.config import (
    BrokenSource,
    Config,
    ConfigError,
    DocumentSource,
    WarehouseSource,
    load_config,
    parse_config,
)
from feedstock.errors import ConfigError as ErrorsConfigError

DOCS = {"name": "handbook", "kind": "documents", "uri": "include/sample_data/handbook"}
WAREHOUSE = {"name": "tickets", "kind": "warehouse", "conn_id": "wh", "table": "t", "key": "id"}
CORPUS = {"name": "web", "kind": "corpus", "uri": "s3://bucket/web"}


@pytest.fixture(autouse=True)
def no_lake_override(monkeypatch):
    monkeypatch.delenv("FEEDSTOCK_LAKE", raising=False)


def parse(**raw) -> Config:
    return parse_config({"lake": "s3://bucket/lake", "sources": [DOCS], **raw})


def test_the_shipped_config_loads_and_points_at_the_sample_data():
    config = load_config()
    handbook = config.source("handbook")
    assert isinstance(handbook, DocumentSource)
    assert handbook.uri.endswith("include/sample_data/handbook")
    assert handbook.access_tags == ("internal",)
    assert {s.kind for s in config.sources} == {"documents", "warehouse", "corpus", "dataset"}
    assert config.source("crawl").uri.endswith("include/sample_data/corpus")
    assert config.broken == ()
    assert config.source_names("warehouse") == ["tickets", "products"]


def test_config_error_is_the_errors_module_class():
    assert ConfigError is ErrorsConfigError


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
    assert config.source("handbook").include == ("**/*",)
    tickets = config.source("tickets")
    assert isinstance(tickets, WarehouseSource) and tickets.watermark == "updated_at"


def test_lake_env_overrides(monkeypatch):
    monkeypatch.setenv("FEEDSTOCK_LAKE", "s3://other/lake")
    assert parse_config({"lake": "./data/lake", "sources": []}).lake == "s3://other/lake"


def test_options_are_typed_and_frozen():
    config = parse(rag={"embedding": {"model": "m"}, "k": 3}, pretrain={"sources": ["handbook"]})
    assert config.rag.embedding.model == "m" and config.rag.k == 3
    assert config.pretrain.sources == ("handbook",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rag.k = 4  # type: ignore[misc]


def test_dataclasses_check_their_fields_when_built_in_code_too():
    with pytest.raises(
        ConfigError, match=r"^source 'x': field 'batch_size' must be a positive integer, got 0$"
    ):
        DocumentSource(name="x", uri="/tmp", batch_size=0)
    config = parse()
    with pytest.raises(ConfigError, match="field 'k'"):
        dataclasses.replace(config.rag, k=0)
    assert dataclasses.replace(config.pretrain, seed=7).seed == 7


def problem_of(raw: dict) -> tuple[str, str]:
    """How a configuration fails: ("raises", message) at load, or ("broken", message) for its one source."""
    try:
        config = parse_config(raw)
    except ConfigError as exc:
        return "raises", str(exc)
    assert len(config.broken) == 1, config
    return "broken", config.broken[0].error


BAD = [
    # top level: the load fails
    ("raises", {"lake": 5}, ["'lake'"]),
    ("raises", {"lake": ""}, ["'lake'"]),
    ("raises", {"sorces": []}, ["'sorces'", "did you mean 'sources'"]),
    ("raises", {"lake_aws_conn_id": 5}, ["'lake_aws_conn_id'"]),
    ("raises", {"validation": {"max_failure_ratio": "lots"}}, ["'validation'", "'max_failure_ratio'"]),
    ("raises", {"validation": {"max_failure_ratio": 1.5}}, ["'max_failure_ratio'"]),
    ("raises", {"validation": 5}, ["'validation'"]),
    ("raises", {"sources": {}}, ["'sources'", "list"]),
    ("raises", {"rag": {"k": "five"}}, ["'rag'", "'k'"]),
    ("raises", {"rag": {"min_recall": 2}}, ["'min_recall'"]),
    ("raises", {"rag": {"on_low_recall": "maybe"}}, ["'on_low_recall'", "fail or warn"]),
    ("raises", {"rag": {"chunk_overlap": 300}}, ["'chunk_overlap'"]),
    ("raises", {"rag": {"top_k": 5}}, ["'rag'", "'top_k'"]),
    ("raises", {"rag": {"boilerplate": {"min_docs": -1}}}, ["'rag.boilerplate'", "'min_docs'"]),
    ("raises", {"rag": {"boilerplate": 5}}, ["'rag'", "'boilerplate'"]),
    ("raises", {"rag": {"embedding": {"provider": "cohere"}}}, ["'rag.embedding'", "'provider'"]),
    ("raises", {"rag": {"embedding": {"modle": "x"}}}, ["'rag.embedding'", "'modle'"]),
    ("raises", {"rag": {"embedding": {"batch_size": 0}}}, ["'rag.embedding'", "'batch_size'"]),
    ("raises", {"pretrain": {"seed": "x"}}, ["'pretrain'", "'seed'"]),
    ("raises", {"pretrain": {"exact_dedup": "yes"}}, ["'exact_dedup'"]),
    ("raises", {"pretrain": {"sources": "handbook"}}, ["'sources'"]),
    ("raises", {"pretrain": {"weights": {"handbook": "lots"}}}, ["'weights'"]),
    ("raises", {"pretrain": {"weights": {"wikipedia": 1.0}}}, ["'weights'", "'wikipedia'"]),
    ("raises", {"pretrain": {"tokeniser": {}}}, ["'pretrain'", "'tokeniser'"]),
    ("raises", {"pretrain": {"minhash": {"perms": 10}}}, ["'pretrain.minhash'", "'perms'"]),
    ("raises", {"pretrain": {"minhash": {"threshold": 1.5}}}, ["'pretrain.minhash'", "'threshold'"]),
    ("raises", {"pretrain": {"normalize": {"ftffy": True}}}, ["'normalize'", "'ftffy'"]),
    ("raises", {"pretrain": {"language": {"min_score": "high"}}}, ["'language'", "'min_score'"]),
    ("raises", {"pretrain": {"tokenizer": {"kind": "sentencepiece"}}}, ["'tokenizer'", "sentencepiece"]),
    ("raises", {"pretrain": {"quality": {"c5": {}}}}, ["'quality'", "'c5'"]),
    ("raises", {"pretrain": {"decontamination": {"ngram": 8}}}, ["'decontamination'", "'eval_sets'"]),
    ("raises", {"pretrain": {"tokenizer": {"kind": "huggingface"}}}, ["'tokenizer'", "'path'"]),
    ("raises", {"pretrain": {"minhash": 5}}, ["'pretrain'", "'minhash'"]),
    # one source: only that source is broken
    ("broken", {"sources": [{**DOCS, "access_tags": "internal"}]}, ["'handbook'", "'access_tags'"]),
    ("broken", {"sources": [{**DOCS, "batch_size": 2.5}]}, ["'handbook'", "'batch_size'", "2.5"]),
    ("broken", {"sources": [{**DOCS, "batch_size": True}]}, ["'handbook'", "'batch_size'"]),
    ("broken", {"sources": [{**DOCS, "include": 5}]}, ["'handbook'", "'include'"]),
    ("broken", {"sources": [{**DOCS, "max_file_mb": 0}]}, ["'handbook'", "'max_file_mb'"]),
    ("broken", {"sources": [{**DOCS, "uri": 5}]}, ["'handbook'", "'uri'"]),
    ("broken", {"sources": [{**DOCS, "text_field": 5}]}, ["'handbook'", "'text_field'"]),
    ("broken", {"sources": [{**DOCS, "aws_conn_id": ["a"]}]}, ["'handbook'", "'aws_conn_id'"]),
    ("broken", {"sources": [{**DOCS, "html_extraction": "main"}]}, ["'handbook'", "'html_extraction'"]),
    ("broken", {"sources": [{**CORPUS, "part_mb": -1}]}, ["'web'", "'part_mb'"]),
    ("broken", {"sources": [{**CORPUS, "format": "csv"}]}, ["'web'", "'format'"]),
    ("broken", {"sources": [{**WAREHOUSE, "document": "x"}]}, ["'tickets'", "'document'"]),
    (
        "broken",
        {"sources": [{**WAREHOUSE, "document": {"text": "t", "body": "b"}}]},
        ["'document'", "'body'"],
    ),
    ("broken", {"sources": [{**WAREHOUSE, "key": 5}]}, ["'tickets'", "'key'"]),
    ("broken", {"sources": [{**WAREHOUSE, "conn_id": 5}]}, ["'tickets'", "'conn_id'"]),
    ("broken", {"sources": [{**WAREHOUSE, "batch_size": "many"}]}, ["'tickets'", "'batch_size'"]),
    ("broken", {"sources": ["handbook"]}, ["source #1", "mapping"]),
    ("broken", {"sources": [{**DOCS, "name": "Bad Name"}]}, ["source #1", "'name'"]),
    ("broken", {"sources": [{**DOCS, "name": 5}]}, ["source #1", "'name'"]),
    ("broken", {"sources": [DOCS, DOCS]}, ["'handbook'", "'name'", "used by two sources"]),
]


@pytest.mark.parametrize("outcome, raw, words", BAD, ids=[f"{o}-{w[-1]}" for o, _, w in BAD])
def test_every_bad_value_is_one_line_naming_the_field(outcome, raw, words):
    got, message = problem_of({"lake": "s3://bucket/lake", "sources": [DOCS], **raw})
    assert got == outcome, message
    assert "\n" not in message and len(message) < 200, message
    for word in words:
        assert word in message, message


def test_the_issue_messages_exactly():
    assert problem_of({"sources": [{**DOCS, "name": "itdocs", "batch_size": 2.5}]})[1] == (
        "source 'itdocs': field 'batch_size' must be a positive integer, got 2.5"
    )
    assert problem_of({"sources": [{**DOCS, "access_tags": "internal"}]})[1] == (
        "source 'handbook': field 'access_tags' must be a list of strings, got 'internal'"
    )
    assert problem_of({"sources": [], "validation": {"max_failure_ratio": "lots"}})[1] == (
        "config 'validation': field 'max_failure_ratio' must be a number between 0 and 1, got 'lots'"
    )
    assert (
        problem_of({"sources": [], "sorces": []})[1]
        == "config: unknown field 'sorces' (did you mean 'sources'?)"
    )
    assert problem_of({"sources": [], "lake": 5})[1] == "config: field 'lake' must be a path or URL, got 5"


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
    config = parse_config({"sources": [source]})
    assert config.sources == ()
    (broken,) = config.broken
    assert "\n" not in broken.error
    for word in words:
        assert word in broken.error
    with pytest.raises(ConfigError) as error:
        config.source(broken.name)
    assert str(error.value) == broken.error == config.problem(broken.name)


# ---- one broken source never sinks the others ------------------------------------------------------------


def test_a_broken_source_leaves_the_others_working():
    itdocs = {**DOCS, "name": "itdocs", "batch_size": 2.5}
    config = parse_config({"lake": "s3://bucket/lake", "sources": [DOCS, itdocs, WAREHOUSE]})
    assert [s.name for s in config.sources] == ["handbook", "tickets"]
    assert config.broken == (
        BrokenSource(
            "itdocs", "documents", "source 'itdocs': field 'batch_size' must be a positive integer, got 2.5"
        ),
    )
    assert config.source("handbook").batch_size == 200
    with pytest.raises(ConfigError, match=r"^source 'itdocs': field 'batch_size' must be a positive integer"):
        config.source("itdocs")
    with pytest.raises(ConfigError, match=r"^source 'nope': not in the configuration$"):
        config.source("nope")
    assert config.problem("itdocs") == config.broken[0].error
    assert config.problem("handbook") is None and config.problem("nope") is None
    assert config.source_names("documents") == ["handbook", "itdocs"]
    assert config.source_names("warehouse") == ["tickets"]
    assert [s.name for s in config.of_kind("documents")] == ["handbook"]


def test_source_names_keep_file_order_and_list_an_unknown_kind_everywhere():
    config = parse_config(
        {
            "lake": "s3://bucket/lake",
            "sources": [
                {**DOCS, "name": "first", "max_file_mb": "big"},
                {**WAREHOUSE, "name": "second"},
                {"name": "third", "kind": "ftp"},
                DOCS,
                {"kind": "documents"},
            ],
        }
    )
    assert [(b.name, b.kind) for b in config.broken] == [
        ("first", "documents"),
        ("third", None),
        ("#5", "documents"),
    ]
    assert config.source_names("documents") == ["first", "third", "handbook", "#5"]
    assert config.source_names("warehouse") == ["second", "third"]
    assert config.source_names("corpus") == ["third"]
    assert "field 'kind'" in config.problem("third")


def test_a_duplicate_name_breaks_the_second_entry_only():
    config = parse_config({"lake": "s3://bucket/lake", "sources": [DOCS, {**DOCS, "uri": "s3://b/other"}]})
    assert config.source("handbook").uri.endswith("include/sample_data/handbook")
    assert config.broken == (
        BrokenSource("handbook", "documents", "source 'handbook': field 'name' is used by two sources"),
    )
    assert config.source_names("documents") == ["handbook"]
    assert config.problem("handbook") is None


def test_pretrain_may_name_a_broken_source_but_not_an_unknown_one():
    sources = [DOCS, {**CORPUS, "format": "csv"}]
    config = parse_config(
        {
            "lake": "s3://bucket/lake",
            "sources": sources,
            "pretrain": {"sources": ["web"], "weights": {"web": 2}},
        }
    )
    assert config.pretrain.sources == ("web",) and config.problem("web")
    with pytest.raises(
        ConfigError, match=r"^config 'pretrain': field 'sources' names unknown source 'nope'$"
    ):
        parse_config({"lake": "s3://bucket/lake", "sources": sources, "pretrain": {"sources": ["nope"]}})


def test_a_broken_source_in_the_file_does_not_fail_the_load(tmp_path):
    raw = {"lake": str(tmp_path / "lake"), "sources": [DOCS, {**DOCS, "name": "itdocs", "access_tags": "x"}]}
    (tmp_path / "feedstock.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(tmp_path / "feedstock.yaml")
    assert [s.name for s in config.sources] == ["handbook"]
    assert (
        config.problem("itdocs") == "source 'itdocs': field 'access_tags' must be a list of strings, got 'x'"
    )


def test_the_cli_warns_once_per_broken_source_and_carries_on(tmp_path, monkeypatch, capsys):
    raw = {
        "lake": str(tmp_path / "lake"),
        "sources": [DOCS, {**DOCS, "name": "itdocs", "batch_size": 2.5}, "x"],
    }
    (tmp_path / "feedstock.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("FEEDSTOCK_CONFIG", str(tmp_path / "feedstock.yaml"))
    assert cli.main(["catalog", "--json"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "[]"
    assert err.splitlines() == [
        "warning: source 'itdocs': field 'batch_size' must be a positive integer, got 2.5",
        "warning: source #3: must be a mapping, got 'x'",
    ]


# ---- the lake ---------------------------------------------------------------------------------------------


def test_an_unwritable_lake_fails_the_load(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for lake in (afile, afile / "lake", afile / "deeper" / "lake", Path("/proc/feedstock-lake")):
        with pytest.raises(ConfigError) as error:
            parse_config({"lake": str(lake), "sources": []})
        message = str(error.value)
        assert message.startswith("config: field 'lake': ") and "\n" not in message
    monkeypatch.setenv("FEEDSTOCK_LAKE", str(afile / "lake"))
    with pytest.raises(ConfigError, match=r"^config: field 'lake' \(\$FEEDSTOCK_LAKE\): "):
        parse_config({"lake": "s3://bucket/lake", "sources": []})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_lake_folder_fails_the_load(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="'lake'"):
        parse_config({"lake": str(tmp_path / "ro" / "lake"), "sources": []})


def test_a_writable_lake_is_checked_without_leaving_anything_behind(tmp_path):
    assert parse_config({"lake": str(tmp_path / "a" / "lake"), "sources": []}).lake == str(
        tmp_path / "a" / "lake"
    )
    assert list(tmp_path.iterdir()) == []
    assert parse_config({"lake": "s3://bucket/lake", "sources": []}).lake == "s3://bucket/lake"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("sources: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- lake: x")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
