"""The pretraining part of the configuration: corpus sources and the ``pretrain`` block."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedstock.config import ConfigError, CorpusSource, MinHash, Pretrain, parse_config

CORPUS = {"name": "web", "kind": "corpus", "uri": "s3://bucket/web"}
DOCS = {"name": "handbook", "kind": "documents", "uri": "s3://bucket/docs"}


def parse(config_sources: list[dict] | None = None, /, **pretrain):
    raw = {
        "lake": "s3://bucket/lake",
        "sources": [CORPUS, DOCS] if config_sources is None else config_sources,
    }
    if pretrain:
        raw["pretrain"] = pretrain
    return parse_config(raw, base_dir=Path("/project"))


def error(config_sources: list[dict] | None = None, /, **pretrain) -> str:
    with pytest.raises(ConfigError) as info:
        parse(config_sources, **pretrain)
    message = str(info.value)
    assert "\n" not in message
    return message


def broken(source: dict) -> str:
    """A bad source does not fail the load: it is broken, with a one-line error, and the others stay."""
    config = parse([source, DOCS])
    assert [s.name for s in config.sources] == ["handbook"]
    (entry,) = config.broken
    assert "\n" not in entry.error and entry.kind == "corpus"
    return entry.error


def test_corpus_source_defaults():
    web = parse().source("web")
    assert isinstance(web, CorpusSource)
    assert web.kind == "corpus"
    assert (web.format, web.part_mb, web.text_field, web.id_field) == ("jsonl", 256.0, "text", "id")
    assert web.include == ("**/*",)


def test_corpus_source_parsed():
    source = {
        **CORPUS,
        "uri": "data/corpus",
        "format": "parquet",
        "part_mb": 64,
        "text_field": "body",
        "id_field": None,
        "include": "**/*.parquet",
        "access_tags": ["public"],
    }
    web = parse([source]).source("web")
    assert web.format == "parquet"
    assert web.part_mb == 64
    assert web.text_field == "body" and web.id_field is None
    assert web.include == ("**/*.parquet",)
    assert web.access_tags == ("public",)
    assert web.uri == "/project/data/corpus"


def test_bad_format_names_source_and_field():
    message = broken({**CORPUS, "format": "csv"})
    assert message == "source 'web': field 'format' must be jsonl or parquet, got 'csv'"


@pytest.mark.parametrize("value", [0, -1, "big"])
def test_bad_part_mb(value):
    message = broken({**CORPUS, "part_mb": value})
    assert message.startswith("source 'web': field 'part_mb' must be a positive number")


def test_corpus_needs_uri_and_known_fields():
    assert "field 'uri'" in broken({"name": "web", "kind": "corpus", "uri": ""})
    assert "field 'uri'" in broken({"name": "web", "kind": "corpus"})
    assert broken({**CORPUS, "text_column": "x"}).startswith("source 'web': unknown field 'text_column'")


def test_pretrain_defaults():
    pretrain = parse().pretrain
    assert pretrain == Pretrain()
    assert pretrain.minhash == MinHash()
    assert pretrain.tokenizer == {"kind": "tiktoken", "name": "cl100k_base"}


def test_weights_for_known_sources():
    assert parse(weights={"web": 2.0, "handbook": 0.5}).pretrain.weights == {"web": 2.0, "handbook": 0.5}


def test_weights_naming_unknown_source():
    message = error(weights={"web": 1.0, "wikipedia": 2.0})
    assert message == "config 'pretrain': field 'weights' names unknown source 'wikipedia'"


def test_negative_weight():
    assert "field 'weights'" in error(weights={"web": -1})


def test_sources_naming_unknown_source():
    assert error(sources=["web", "nope"]) == "config 'pretrain': field 'sources' names unknown source 'nope'"
    assert parse(sources=["web"]).pretrain.sources == ("web",)


def test_minhash_parsed():
    minhash = parse(minhash={"num_perm": 64, "bands": 16, "rows": 4, "threshold": 0.7}).pretrain.minhash
    assert minhash == MinHash(num_perm=64, bands=16, rows=4, threshold=0.7)


def test_minhash_bands_times_rows_at_most_num_perm():
    assert parse(minhash={"num_perm": 64, "bands": 16, "rows": 4}).pretrain.minhash.bands == 16
    message = error(minhash={"num_perm": 64, "bands": 17, "rows": 4})
    assert message == (
        "config 'pretrain.minhash': fields 'bands' x 'rows' (17 x 4) must not exceed 'num_perm' (64)"
    )


@pytest.mark.parametrize("bad", [{"threshold": 0}, {"threshold": 1.5}, {"shingle_size": 0}])
def test_minhash_bad_threshold_or_shingle(bad):
    ((field, value),) = bad.items()
    assert error(minhash=bad).startswith(f"config 'pretrain.minhash': field '{field}' must be")
    assert error(minhash=bad).endswith(f", got {value}")


def test_minhash_unknown_field():
    assert error(minhash={"perms": 10}).startswith("config 'pretrain.minhash': unknown field 'perms'")


@pytest.mark.parametrize("off", [None, False])
def test_minhash_null_disables_fuzzy_dedup(off):
    assert parse(minhash=off).pretrain.minhash is None
    assert parse(exact_dedup=True).pretrain.minhash is not None


def test_false_switches_a_stage_off_and_true_keeps_the_default_minhash():
    pretrain = parse(language=False, pii=False, decontamination=False, minhash=True).pretrain
    assert (pretrain.language, pretrain.pii, pretrain.decontamination) == (None, None, None)
    assert pretrain.minhash == MinHash()


@pytest.mark.parametrize("field", ["batch_size", "dedup_partitions", "output_shards"])
def test_positive_integers(field):
    assert error(**{field: 0}) == f"config 'pretrain': field '{field}' must be a positive integer, got 0"


def test_unknown_pretrain_field():
    assert error(tokeniser={}).startswith("config 'pretrain': unknown field 'tokeniser'")


def test_paths_resolved():
    pretrain = parse(
        tokenizer={"kind": "huggingface", "path": "models/tokenizer.json"},
        decontamination={"eval_sets": ["evals/mmlu.jsonl", "s3://bucket/evals/gsm8k.jsonl"], "ngram": 8},
    ).pretrain
    assert pretrain.tokenizer == {"kind": "huggingface", "path": "/project/models/tokenizer.json"}
    assert pretrain.decontamination == {
        "eval_sets": ["/project/evals/mmlu.jsonl", "s3://bucket/evals/gsm8k.jsonl"],
        "ngram": 8,
    }
