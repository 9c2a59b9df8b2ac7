"""A fine-tuning release as its trainers read it: every exported file, loaded the way its consumer loads it.

One release is built from the shipped config and sample data (no Airflow). Every file must load with HuggingFace
``datasets`` (``load_dataset("json")``, what TRL, LLaMA-Factory and axolotl do) with the row count ``stats.json``
gives, and every row must pass the consumer's own rules, written here independently of
:func:`feedstock.finetune.exports.problems`: OpenAI's chat and DPO fine-tuning formats, TRL's conversational
formats (and TRL itself when it is installed) and LLaMA-Factory's converters. A negative test shows the checks
can fail.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from feedstock.finetune import exports

OPENAI_ROLES = ("system", "user", "assistant")


# ---- the release --------------------------------------------------------------------------------------------


class Release:
    def __init__(self, folder: Path, cache_dir: Path):
        self.folder = folder
        self.cache_dir = cache_dir
        self.stats = json.loads((folder / "stats.json").read_text())
        self.dataset_info = json.loads((folder / "dataset_info.json").read_text())
        self.files = self.stats["files"]

    def of_format(self, *formats: str) -> list[dict[str, Any]]:
        found = [f for f in self.files if f["format"] in formats]
        assert found, f"the release wrote no {formats} file"
        return found

    def raw(self, path: str) -> list[dict[str, Any]]:
        """The rows as OpenAI's upload reads them: one JSON object per line."""
        lines = (self.folder / path).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def load(self, path: str):
        return _load(str(self.folder / path), str(self.cache_dir))


@cache
def _load(path: str, cache_dir: str):
    import datasets

    return datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    import datasets

    from feedstock.config import load_config
    from feedstock.finetune import feed
    from feedstock.lake import Lake

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    base = tmp_path_factory.mktemp("finetune-release")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FEEDSTOCK_LAKE", str(base / "lake"))
        env.delenv("FEEDSTOCK_CONFIG", raising=False)  # the shipped config, over include/sample_data/finetune
        config = load_config()
        lake = Lake(config.lake)
        prepared = feed.prepare(config, lake, None)
        results = [feed.process_source(config, lake, "run1", name, None) for name in prepared["sources"]]
        curated = feed.curate(config, lake, "run1", results)
        by = {"dag_id": "finetune_feed", "task_id": "release", "run_id": "run1"}
        stats = feed.release(config, lake, prepared, curated, by)
        assert stats["released"] and stats["examples_published"]
        folder = Path(feed.release_dir(lake, prepared["release"]))
    return Release(folder, base / "hf-cache")


# ---- OpenAI: chat and preference (DPO) fine-tuning files ------------------------------------------------------
# The rules of OpenAI's fine-tuning guide and of the format checks in its cookbook's chat fine-tuning data-prep
# notebook: a "messages" list; each message a role of system/user/assistant and non-empty text content, with no
# unknown key; at least one assistant message, and (for SFT here) the last one an assistant's. Preference rows:
# "input" {"messages"} whose last turn is the user's, and "preferred_output" / "non_preferred_output" each a list
# of exactly one assistant message.


def openai_message_problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "message is not an object"
    if set(message) - {"role", "content", "name", "weight"}:
        return f"message has unrecognized keys {sorted(set(message) - {'role', 'content', 'name', 'weight'})}"
    if message.get("role") not in OPENAI_ROLES:
        return f"unrecognized role {message.get('role')!r}"
    if not isinstance(message.get("content"), str) or not message["content"].strip():
        return "missing or empty content"
    return None


def openai_chat_problem(row: Any) -> str | None:
    if not isinstance(row, dict) or set(row) - {"messages", "tools", "parallel_tool_calls"}:
        return "a row is an object with 'messages' (and optionally tools)"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "missing messages list"
    for message in messages:
        if problem := openai_message_problem(message):
            return problem
    if not any(m["role"] == "assistant" for m in messages):
        return "example missing assistant message"
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's"
    return None


def openai_dpo_problem(row: Any) -> str | None:
    if not isinstance(row, dict) or set(row) != {"input", "preferred_output", "non_preferred_output"}:
        return "a row is {input, preferred_output, non_preferred_output}"
    if not isinstance(row["input"], dict) or set(row["input"]) - {"messages", "tools", "parallel_tool_calls"}:
        return "input is an object with 'messages'"
    messages = row["input"].get("messages")
    if not isinstance(messages, list) or not messages:
        return "missing input.messages"
    for message in messages:
        if problem := openai_message_problem(message):
            return problem
    if messages[-1]["role"] != "user":
        return "input.messages must end with the user's turn"
    for key in ("preferred_output", "non_preferred_output"):
        output = row[key]
        if not isinstance(output, list) or len(output) != 1:
            return f"{key} must be a list of exactly one message"
        if problem := openai_message_problem(output[0]):
            return f"{key}: {problem}"
        if output[0]["role"] != "assistant":
            return f"{key} must be an assistant message"
    return None


def test_every_file_loads_with_datasets_and_has_its_row_count(release):
    on_disk = sorted(str(p.relative_to(release.folder)) for p in release.folder.rglob("*.jsonl"))
    assert on_disk == sorted(f["path"] for f in release.files)  # every written file is accounted for
    assert {f["format"] for f in release.files} == set(exports.SFT_FORMATS + exports.PAIR_FORMATS)
    for f in release.files:
        dataset = release.load(f["path"])
        assert dataset.num_rows == f["examples"] == len(release.raw(f["path"])), f["path"]
        assert f["path"] == exports.file_name(f["format"], f["kind"], f["split"])
    # each format family holds every example of its split once
    for split, n in release.stats["splits"].items():
        for family in (
            ("openai_chat", "openai_dpo"),
            ("trl_messages", "trl_preference"),
            ("alpaca",),
            ("sharegpt",),
        ):
            assert n == sum(
                f["examples"] for f in release.files if f["split"] == split and f["format"] in family
            )


def test_openai_rows_follow_openai_fine_tuning_formats(release):
    checked = 0
    for f in release.of_format("openai_chat", "openai_dpo"):
        check = openai_chat_problem if f["format"] == "openai_chat" else openai_dpo_problem
        for i, row in enumerate(release.raw(f["path"])):
            assert check(row) is None, f"{f['path']} row {i}: {check(row)}: {row}"
            checked += 1
        for i, row in enumerate(release.load(f["path"])):  # and the same rows as datasets gives them
            assert check(row) is None, f"{f['path']} row {i} (datasets): {check(row)}"
    assert checked == sum(f["examples"] for f in release.of_format("openai_chat", "openai_dpo"))


# ---- TRL: conversational language-modeling, prompt-completion and preference datasets -------------------------
# TRL's dataset formats guide: "messages"; "prompt" + "completion"; "prompt" + "chosen" + "rejected" (explicit
# prompt: the prompt is not repeated in the answers). Its trainers render them with the tokenizer's chat
# template: the prompt with the generation prompt, then prompt + answer, the answer being what follows the prompt.


def is_message_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            openai_message_problem({"role": m.get("role"), "content": m.get("content")}) is None
            for m in value
        )
    )


def tiny_chat_tokenizer():
    """A word-level tokenizer with a ChatML-like template, built in memory (nothing downloaded)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0, "</s>": 1}, unk_token="[UNK]")),
        unk_token="[UNK]",
        eos_token="</s>",
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    return tokenizer


def trl_rows(release, fmt: str):
    for f in release.of_format(fmt):
        for i, row in enumerate(release.load(f["path"])):
            yield f"{f['path']} row {i}", row


def test_trl_rows_follow_trl_conversational_formats(release):
    tokenizer = tiny_chat_tokenizer()

    def render(messages, generation=False):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    for where, row in trl_rows(release, "trl_messages"):
        assert set(row) == {"messages"}, where
        assert is_message_list(row["messages"]) and row["messages"][-1]["role"] == "assistant", where

    for where, row in trl_rows(release, "trl_prompt_completion"):
        assert set(row) == {"prompt", "completion"}, where
        assert is_message_list(row["prompt"]) and row["prompt"][-1]["role"] == "user", where
        assert is_message_list(row["completion"]), where
        assert [m["role"] for m in row["completion"]] == ["assistant"], where
        prompt = render(row["prompt"], generation=True)
        assert render(row["prompt"] + row["completion"]).startswith(prompt), where

    for where, row in trl_rows(release, "trl_preference"):
        assert set(row) == {"prompt", "chosen", "rejected"}, where
        assert is_message_list(row["prompt"]) and row["prompt"][-1]["role"] == "user", where
        prompt = render(row["prompt"], generation=True)
        for key in ("chosen", "rejected"):
            answer = row[key]
            assert is_message_list(answer), where
            assert {m["role"] for m in answer} == {"assistant"}, f"{where}: {key} repeats prompt turns"
            assert not any(m in row["prompt"] for m in answer), f"{where}: {key} repeats the prompt"
            assert render(row["prompt"] + answer).startswith(prompt), where
            assert row["prompt"][-1]["content"] not in render(answer), f"{where}: {key} repeats the prompt"


def test_trl_itself_accepts_the_trl_files(release):
    data_utils = pytest.importorskip("trl.data_utils")
    tokenizer = tiny_chat_tokenizer()
    for fmt, keys in (
        ("trl_messages", {"text"}),
        ("trl_prompt_completion", {"prompt", "completion"}),
        ("trl_preference", {"prompt", "chosen", "rejected"}),
    ):
        for where, row in trl_rows(release, fmt):
            assert data_utils.is_conversational(row), where
            rendered = data_utils.maybe_apply_chat_template(row, tokenizer)
            assert keys <= set(rendered) and all(isinstance(rendered[k], str) for k in keys), where


# ---- LLaMA-Factory: dataset_info.json and its alpaca / sharegpt converters ------------------------------------
# As hiyouga/LLaMA-Factory reads a dataset_dir: data/parser.py makes a DatasetAttr from each dataset_info.json
# entry (with "columns" given, every column it does not name is None; with "tags" given, every tag it does not
# name is None), data/loader.py loads file_name with load_dataset("json"), and data/converter.py turns each row
# into _prompt/_response: AlpacaDatasetConverter (history pairs, then instruction + "\n" + input as the user turn;
# a ranked row's chosen/rejected strings, else the response string, else no response) and
# SharegptDatasetConverter (a leading system tag is taken off; turn i must carry the user tag when i is even and
# the assistant tag when odd, i.e. odd/even positions counting from 1; else the row is broken; an even count for
# supervised rows, odd for ranked ones, whose chosen/rejected must carry the assistant tag). A broken row becomes
# an empty _prompt/_response, and data/processor/supervised.py and pairwise.py then drop any row whose _prompt is
# not of odd length or whose _response is not exactly one (supervised) or at least two (pairwise) messages.

ALPACA_COLUMNS = ("system", "tools", "images", "chosen", "rejected", "kto_tag", "prompt", "query", "response")
SHAREGPT_COLUMNS = ("system", "tools", "images", "chosen", "rejected", "kto_tag", "messages")
TAGS = (
    "role_tag",
    "content_tag",
    "user_tag",
    "assistant_tag",
    "observation_tag",
    "function_tag",
    "system_tag",
)
TAG_DEFAULTS = dict(
    zip(TAGS, ("from", "value", "human", "gpt", "observation", "function_call", "system"), strict=True)
)


def dataset_attr(entry: dict[str, Any]) -> dict[str, Any]:
    """parser.py's DatasetAttr of one dataset_info.json entry (as a dict)."""
    attr = {
        "formatting": entry.get("formatting", "alpaca"),
        "ranking": entry.get("ranking", False),
        **{c: None for c in ALPACA_COLUMNS + SHAREGPT_COLUMNS},
        **{"prompt": "instruction", "query": "input", "response": "output", "history": None},
        "messages": "conversations",
        **TAG_DEFAULTS,
    }
    if "columns" in entry:
        names = list(ALPACA_COLUMNS) + ["history"] if attr["formatting"] == "alpaca" else SHAREGPT_COLUMNS
        attr |= {name: entry["columns"].get(name) for name in names}
    if attr["formatting"] == "sharegpt" and "tags" in entry:
        attr |= {tag: entry["tags"].get(tag) for tag in TAGS}
    return attr


def llamafactory_convert(attr: dict[str, Any], example: dict[str, Any]) -> tuple[list, list, str]:
    """converter.py: one row to (_prompt, _response, why it is broken or '')."""
    if attr["formatting"] == "alpaca":
        prompt = []
        if attr["history"] and isinstance(example[attr["history"]], list):
            for old_prompt, old_response in example[attr["history"]]:  # not a pair: LLaMA-Factory raises
                prompt += [
                    {"role": "user", "content": old_prompt},
                    {"role": "assistant", "content": old_response},
                ]
        query = [example[attr[c]] for c in ("prompt", "query") if attr[c] and example[attr[c]]]
        prompt.append({"role": "user", "content": "\n".join(query)})
        if attr["ranking"] and all(isinstance(example[attr[k]], str) for k in ("chosen", "rejected")):
            response = [{"role": "assistant", "content": example[attr[k]]} for k in ("chosen", "rejected")]
        elif attr["response"] and isinstance(example[attr["response"]], str):
            response = [{"role": "assistant", "content": example[attr["response"]]}]
        else:
            response = []
        return prompt, response, ""

    role, content = attr["role_tag"], attr["content_tag"]
    accept = ((attr["user_tag"], attr["observation_tag"]), (attr["assistant_tag"], attr["function_tag"]))
    roles = {attr["user_tag"]: "user", attr["assistant_tag"]: "assistant", attr["system_tag"]: "system"}
    messages = example[attr["messages"]]
    if attr["system_tag"] and messages and messages[0][role] == attr["system_tag"]:
        messages = messages[1:]
    aligned = []
    for i, message in enumerate(messages):
        if message[role] not in accept[i % 2]:
            return [], [], "Invalid role tag"
        aligned.append({"role": roles[message[role]], "content": message[content]})
    if len(aligned) % 2 != (1 if attr["ranking"] else 0):
        return [], [], "Invalid message count"
    if attr["ranking"] and all(isinstance(example[attr[k]], dict) for k in ("chosen", "rejected")):
        answers = [example[attr[k]] for k in ("chosen", "rejected")]
        if any(a[role] not in accept[-1] for a in answers):
            return [], [], "Invalid role tag in chosen/rejected"
        return aligned, [{"role": roles[a[role]], "content": a[content]} for a in answers], ""
    return aligned[:-1], aligned[-1:], ""


def llamafactory_problem(entry: dict[str, Any], example: dict[str, Any]) -> str | None:
    """Why LLaMA-Factory would skip or drop this row (or train on an empty turn), or None."""
    attr = dataset_attr(entry)
    used = [attr[c] for c in (ALPACA_COLUMNS if attr["formatting"] == "alpaca" else SHAREGPT_COLUMNS)]
    used += [attr["history"]] if attr["formatting"] == "alpaca" else []
    if missing := [c for c in used if c and c not in example]:
        return f"columns {missing} are not in the file"  # the converter's example[column] raises KeyError
    try:
        prompt, response, broken = llamafactory_convert(attr, example)
    except (TypeError, ValueError, KeyError) as exc:
        return f"converter fails: {exc!r}"
    if broken:
        return broken
    if len(prompt) % 2 != 1 or (len(response) < 2 if attr["ranking"] else len(response) != 1):
        return "Dropped invalid example"
    for turn in prompt + response:
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            return f"empty {turn['role']} turn"
    if attr["formatting"] == "alpaca":  # the named columns are there and the prompt/answers are filled in
        for column in ("prompt", *(("chosen", "rejected") if attr["ranking"] else ("response",))):
            if not isinstance(example[attr[column]], str) or not example[attr[column]].strip():
                return f"empty {attr[column]}"
    return None


def test_llamafactory_reads_every_registered_dataset(release):
    info = release.dataset_info
    registered = {entry["file_name"] for entry in info.values()}
    lf_files = release.of_format("alpaca", "sharegpt")
    assert len(info) == len(lf_files) and registered == {f["path"] for f in lf_files}
    checked = 0
    for name, entry in info.items():
        assert entry["formatting"] in ("alpaca", "sharegpt"), name
        dataset = release.load(entry["file_name"])  # loader.py: load_dataset("json", data_files=...)
        missing = set(entry["columns"].values()) - set(dataset.column_names)
        assert not missing, f"{name}: columns {missing} are not in {entry['file_name']}"
        for i, row in enumerate(dataset):
            assert llamafactory_problem(entry, row) is None, (
                f"{name} row {i}: {llamafactory_problem(entry, row)}"
            )
            checked += 1
        assert bool(entry.get("ranking")) == (".pairs." in entry["file_name"]), name
    assert checked == sum(f["examples"] for f in lf_files)


# ---- the checks can fail -----------------------------------------------------------------------------------


def test_the_checks_refuse_bad_rows():
    sharegpt_sft = exports.dataset_info(
        [{"format": "sharegpt", "kind": "sft", "split": "train", "path": "x"}]
    )
    entry = sharegpt_sft["feedstock_sft_train_sharegpt"]
    two_humans = {
        "conversations": [
            {"from": "human", "value": "How do I reset my password?"},
            {"from": "human", "value": "Hello?"},
            {"from": "gpt", "value": "Open Settings > Security and choose Reset."},
        ],
        "system": "",
    }
    assert llamafactory_problem(entry, two_humans) == "Invalid role tag"
    assert exports.problems("sharegpt", two_humans, entry)

    ends_with_user = {
        "messages": [
            {"role": "user", "content": "How do I reset my password?"},
            {"role": "assistant", "content": "Open Settings > Security and choose Reset."},
            {"role": "user", "content": "Thanks!"},
        ]
    }
    assert openai_chat_problem(ends_with_user) == "the last message must be the assistant's"
    assert exports.problems("openai_chat", ends_with_user)

    good = {"messages": ends_with_user["messages"][:2]}
    assert openai_chat_problem(good) is None and exports.problems("openai_chat", good) is None
    assert (
        llamafactory_problem(entry, {**two_humans, "conversations": two_humans["conversations"][1:]}) is None
    )
    two_answers = {
        "input": {"messages": ends_with_user["messages"][:1]},
        "preferred_output": ends_with_user["messages"][1:2] * 2,
        "non_preferred_output": [{"role": "assistant", "content": "No idea."}],
    }
    assert openai_dpo_problem(two_answers) == "preferred_output must be a list of exactly one message"
    assert exports.problems("openai_dpo", two_answers)
