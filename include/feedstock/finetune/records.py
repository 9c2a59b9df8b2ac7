"""Reading fine-tuning records into the one canonical form every later stage works on.

A record becomes an :class:`Example`: ``messages``, a list of ``{role, content}`` (roles ``system``, ``user``,
``assistant``), plus ``chosen`` and ``rejected`` (assistant turns) for a preference pair, where ``messages`` is
the prompt. Nothing is repaired here: a record that cannot be read as its schema says is a :class:`Drop` with
``format:<why>`` (``format:invalid_json``, ``format:missing_field``, ``format:unknown_role``, ...), and the
format stage (:mod:`feedstock.finetune.checks`) judges the structure of what was read.

Schemas of a ``dataset`` source (``schema:``; ``fields:`` renames a schema field to the file's own name):

- ``messages``: OpenAI/TRL chat, ``{"messages": [{"role", "content"}]}``;
- ``sharegpt``: ``{"conversations": [{"from", "value"}], "system"?}`` (``human``/``gpt``, as LLaMA-Factory reads it);
- ``alpaca``: ``{"instruction", "input", "output", "system"?}`` (the input follows the instruction in the user turn);
- ``prompt_response``: ``{"prompt", "response", "system"?}``;
- ``preference``: ``{"prompt", "chosen", "rejected", "system"?}``, each a string or a message list;
- ``labelstudio``: a Label Studio JSON export of the tasks :mod:`feedstock.finetune.review` wrote. An accepted
  response is an SFT example, a pairwise choice a preference pair; a rejected or unreviewed task is a drop
  (``review:rejected``, ``review:not_reviewed``).

Files are JSONL (plain, ``.gz``, ``.zst``), a JSON array (``.json``) or Parquet, read in batches. A record's id is
``<source>/<id field>``, or ``<source>/<file>@<line or row>`` without one; an example's id also hashes its
content, so a changed record is a new example and an unchanged one is recognised by later releases.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from feedstock.config import DatasetSource
from feedstock.lake import Lake, filesystem
from feedstock.stages.steps import Drop

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


@dataclass
class Example:
    """One fine-tuning example in canonical form. ``doc_id`` is the example id (the stages' common name)."""

    doc_id: str
    source: str
    record_id: str
    messages: list[dict[str, Any]]
    chosen: list[dict[str, Any]] | None = None
    rejected: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # tokens, pii counts, ...

    @property
    def kind(self) -> str:
        return "preference" if self.chosen is not None or self.rejected is not None else "sft"

    def turns(self) -> Iterator[dict[str, Any]]:
        """Every message, the preference answers included."""
        yield from self.messages
        yield from self.chosen or ()
        yield from self.rejected or ()

    @property
    def prompt_text(self) -> str:
        """The prompt side: the user turns, which near-duplicate detection compares."""
        return "\n".join(str(m.get("content", "")) for m in self.messages if m.get("role") == "user")

    @property
    def response_text(self) -> str:
        """The answer side: the assistant turns of a conversation, or the chosen answer of a pair."""
        turns = self.chosen if self.kind == "preference" else self.messages
        return "\n".join(str(m.get("content", "")) for m in turns or () if m.get("role") == "assistant")


class RecordError(ValueError):
    """A record that cannot be read as its schema says; the message is the rule (``missing_field``, ...)."""


def example_id(source: str, record_id: str, messages: Any, chosen: Any = None, rejected: Any = None) -> str:
    body = json.dumps([messages, chosen, rejected], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(f"{source}\0{record_id}\0{body}".encode("utf-8", "surrogatepass")).hexdigest()[:24]


def make_example(source: str, record_id: str, messages: list, chosen=None, rejected=None) -> Example:
    return Example(
        example_id(source, record_id, messages, chosen, rejected),
        source,
        record_id,
        messages,
        chosen,
        rejected,
    )


# ---- schemas: a record (a dict) to messages ---------------------------------------------------------------


def _get(record: dict[str, Any], schema_field: str, names: dict[str, str], required: bool = True) -> Any:
    name = names.get(schema_field, schema_field)
    value = record.get(name)
    if value is None and required:
        raise RecordError("missing_field")
    return value


def _messages(value: Any, role_key: str = "role", content_key: str = "content", roles=None) -> list[dict]:
    if not isinstance(value, list):
        raise RecordError("messages_not_a_list")
    out = []
    for turn in value:
        if not isinstance(turn, dict) or role_key not in turn:
            raise RecordError("malformed_message")
        role = turn[role_key]
        role = roles.get(role) if roles is not None else (role if role in ROLES else None)
        if role is None:
            raise RecordError("unknown_role")
        out.append({"role": role, "content": turn.get(content_key)})
    return out


def _turns(value: Any, role: str) -> list[dict]:
    """A string is one turn of ``role``; a list is a message list."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return _messages(value)


def _with_system(messages: list[dict], system: Any) -> list[dict]:
    if system in (None, ""):
        return messages
    return [{"role": "system", "content": system}, *messages]


def parse_record(record: Any, schema: str, names: dict[str, str]) -> tuple[list, list | None, list | None]:
    """``(messages, chosen, rejected)`` of one record of ``schema``; :class:`RecordError` if it cannot be."""
    if not isinstance(record, dict):
        raise RecordError("invalid_json")
    if schema == "messages":
        return _messages(_get(record, "messages", names)), None, None
    if schema == "sharegpt":
        turns = _messages(_get(record, "conversations", names), "from", "value", SHAREGPT_ROLES)
        return _with_system(turns, _get(record, "system", names, False)), None, None
    if schema == "alpaca":
        instruction, extra = _get(record, "instruction", names), _get(record, "input", names, False)
        prompt = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
        turns = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": _get(record, "output", names)},
        ]
        return _with_system(turns, _get(record, "system", names, False)), None, None
    if schema == "prompt_response":
        turns = [
            {"role": "user", "content": _get(record, "prompt", names)},
            {"role": "assistant", "content": _get(record, "response", names)},
        ]
        return _with_system(turns, _get(record, "system", names, False)), None, None
    if schema == "preference":
        prompt = _with_system(
            _turns(_get(record, "prompt", names), "user"), _get(record, "system", names, False)
        )
        chosen = _turns(_get(record, "chosen", names), "assistant")
        rejected = _turns(_get(record, "rejected", names), "assistant")
        return prompt, chosen, rejected
    raise ValueError(f"unknown dataset schema {schema!r}")


def labelstudio_task(task: Any) -> tuple[list, list | None, list | None]:
    """A reviewed Label Studio task (as :mod:`feedstock.finetune.review` wrote it) to an example."""
    from feedstock.finetune.review import verdict

    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise RecordError("invalid_json")
    data = task["data"]
    decision = verdict(task)
    prompt = _with_system([{"role": "user", "content": data.get("prompt")}], data.get("system"))
    if decision == "accept":
        return [*prompt, {"role": "assistant", "content": data.get("response")}], None, None
    if decision in ("left", "right"):
        first, second = data.get("answer1"), data.get("answer2")
        chosen, rejected = (first, second) if decision == "left" else (second, first)
        return (
            prompt,
            [{"role": "assistant", "content": chosen}],
            [{"role": "assistant", "content": rejected}],
        )
    raise RecordError(decision)  # rejected or not_reviewed: reported as review:<why>


# ---- files ------------------------------------------------------------------------------------------------


def file_format(source: DatasetSource, relative: str) -> str:
    if relative.endswith(".parquet"):
        return "parquet"
    if relative.endswith((".json", ".json.gz", ".json.zst")) or source.schema == "labelstudio":
        return "json"
    return source.format


def read_file(
    source: DatasetSource, file: dict[str, Any], lake: Lake, batch_size: int
) -> Iterator[list[Example | Drop]]:
    """Batches of examples (and drops) from one file of a dataset source; OSError and the decoders' errors
    propagate, and the caller quarantines the file."""
    relative = file["relative"]
    records = _records(source, file, lake)
    batch: list[Example | Drop] = []
    for position, record in records:
        fallback = f"{source.name}/{relative}@{position}"
        batch.append(_example(source, record, fallback))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _example(source: DatasetSource, record: Any, fallback: str) -> Example | Drop:
    if isinstance(record, RecordError):
        return Drop(fallback, source.name, "format", f"format:{record}")
    identifier = record.get(source.id_field) if isinstance(record, dict) and source.id_field else None
    if source.schema == "labelstudio" and isinstance(record, dict) and isinstance(record.get("data"), dict):
        # the id the reviewed record had when its task was written, else Label Studio's task id
        identifier = record["data"].get(source.id_field or "id") or identifier
    record_id = f"{source.name}/{identifier}" if identifier not in (None, "") else fallback
    try:
        if source.schema == "labelstudio":
            messages, chosen, rejected = labelstudio_task(record)
        else:
            messages, chosen, rejected = parse_record(record, source.schema, source.fields)
    except RecordError as exc:
        stage = "review" if str(exc) in ("rejected", "not_reviewed") else "format"
        return Drop(record_id, source.name, stage, f"{stage}:{exc}")
    return make_example(source.name, record_id, messages, chosen, rejected)


def _records(source: DatasetSource, file: dict[str, Any], lake: Lake) -> Iterator[tuple[Any, Any]]:
    """``(position, record)`` pairs; a line that is not JSON is a :class:`RecordError` in place of the record."""
    from feedstock.pretrain.corpus import decompressed_lines

    fs, path = filesystem(file["uri"], lake.s3)
    relative = file["relative"]
    kind = file_format(source, relative)
    if kind == "parquet":
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as handle:
            row = 0
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=1_000):
                for record in batch.to_pylist():
                    yield row, record
                    row += 1
        return
    with fs.open(path, "rb") as raw:
        compressed = posixpath.basename(relative).endswith((".gz", ".zst"))
        lines = decompressed_lines(raw, relative) if compressed else raw
        if kind == "json":
            try:
                records = json.loads(b"".join(lines))
            except UnicodeDecodeError:
                raise
            except ValueError:
                yield 0, RecordError("invalid_json")
                return
            for number, record in enumerate(records if isinstance(records, list) else [records]):
                yield number, record
            return
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except UnicodeDecodeError:
                yield number, RecordError("invalid_utf8")
            except ValueError:
                yield number, RecordError("invalid_json")
