"""The files a fine-tuning release writes, one per split per format, in the layout each trainer reads as is.

``<release>/<format>/<split>.jsonl``, one JSON object per line, the same examples in the same order in every
format (so ``finetune.examples.row`` locates an example in all of them). SFT formats hold the conversations,
preference formats the pairs:

- ``openai_chat`` (SFT): ``{"messages": [{"role", "content"}]}``, OpenAI's chat fine-tuning format.
- ``openai_dpo`` (pairs): ``{"input": {"messages"}, "preferred_output": [...], "non_preferred_output": [...]}``,
  OpenAI's preference fine-tuning format.
- ``trl_messages`` (SFT): TRL's conversational language-modeling format, ``{"messages": [...]}``.
- ``trl_prompt_completion`` (SFT): TRL's conversational prompt-completion format: ``prompt`` is every turn
  before the last answer, ``completion`` the last answer (a list of one assistant message).
- ``trl_preference`` (pairs): TRL's conversational preference format, ``prompt``, ``chosen``, ``rejected``, with
  the prompt not repeated in the answers.
- ``alpaca`` (both): LLaMA-Factory's alpaca layout: ``instruction`` (the last user turn), ``input`` (empty),
  ``output`` (or ``chosen``/``rejected``), ``system``, ``history`` (earlier ``[user, assistant]`` pairs).
- ``sharegpt`` (both): LLaMA-Factory's sharegpt layout: ``conversations`` of ``{"from": human|gpt, "value"}``,
  ``system``, and for pairs ``chosen``/``rejected`` as one ``gpt`` message each.

:func:`dataset_info` is the ``dataset_info.json`` that registers every ``alpaca`` and ``sharegpt`` file with
LLaMA-Factory (columns, tags, ``ranking`` for pairs); :func:`axolotl_stanza` is the ``datasets:`` block for
axolotl's ``chat_template`` loader, quoted in the data card.

:func:`problems` checks a written row as its consumer would (OpenAI's format rules, LLaMA-Factory's role
alternation); the release checks every row it wrote and refuses to publish a file with a bad one.
"""

from __future__ import annotations

import json
from typing import Any

SFT_FORMATS = ("openai_chat", "trl_messages", "trl_prompt_completion", "alpaca", "sharegpt")
PAIR_FORMATS = ("openai_dpo", "trl_preference", "alpaca", "sharegpt")
SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system"}


def formats_for(kind: str, configured: tuple[str, ...]) -> list[str]:
    wanted = SFT_FORMATS if kind == "sft" else PAIR_FORMATS
    return [f for f in configured if f in wanted]


def file_name(fmt: str, kind: str, split: str) -> str:
    """``sharegpt/train.jsonl``; pairs in a format both kinds share go beside them as ``<split>.pairs.jsonl``."""
    suffix = ".pairs" if kind == "preference" and fmt in SFT_FORMATS else ""
    return f"{fmt}/{split}{suffix}.jsonl"


def _system(messages: list[dict]) -> tuple[str, list[dict]]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return "", messages


def _history(turns: list[dict]) -> list[list[str]]:
    return [[turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns) - 1, 2)]


def _plain(messages: list[dict] | None) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages or ()]


def row(fmt: str, example: dict[str, Any]) -> dict[str, Any]:
    """One example (``kind``, ``messages``, ``chosen``, ``rejected``) in ``fmt``."""
    messages, chosen, rejected = (
        _plain(example["messages"]),
        _plain(example["chosen"]),
        _plain(example["rejected"]),
    )
    if example["kind"] == "sft":
        if fmt in ("openai_chat", "trl_messages"):
            return {"messages": messages}
        if fmt == "trl_prompt_completion":
            return {"prompt": messages[:-1], "completion": messages[-1:]}
        system, turns = _system(messages)
        if fmt == "alpaca":
            return {
                "instruction": turns[-2]["content"],
                "input": "",
                "output": turns[-1]["content"],
                "system": system,
                "history": _history(turns[:-2]),
            }
        if fmt == "sharegpt":
            return {
                "conversations": [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in turns],
                "system": system,
            }
    else:
        if fmt == "openai_dpo":
            return {
                "input": {"messages": messages},
                "preferred_output": chosen,
                "non_preferred_output": rejected,
            }
        if fmt == "trl_preference":
            return {"prompt": messages, "chosen": chosen, "rejected": rejected}
        system, turns = _system(messages)
        if fmt == "alpaca":
            return {
                "instruction": turns[-1]["content"],
                "input": "",
                "chosen": _joined(chosen),
                "rejected": _joined(rejected),
                "system": system,
                "history": _history(turns[:-1]),
            }
        if fmt == "sharegpt":
            return {
                "conversations": [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in turns],
                "chosen": {"from": "gpt", "value": _joined(chosen)},
                "rejected": {"from": "gpt", "value": _joined(rejected)},
                "system": system,
            }
    raise ValueError(f"format {fmt!r} does not hold {example['kind']} examples")


def _joined(answer: list[dict]) -> str:
    return "\n\n".join(m["content"] for m in answer)


def dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False) + "\n"


def dataset_info(files: list[dict[str, Any]]) -> dict[str, Any]:
    """LLaMA-Factory's ``dataset_info.json`` for the release's alpaca and sharegpt files (paths relative to the
    release folder, which is the ``dataset_dir``). ``files``: ``{format, kind, split, path}``."""
    info: dict[str, Any] = {}
    for f in files:
        if f["format"] not in ("alpaca", "sharegpt"):
            continue
        name = f"feedstock_{f['kind']}_{f['split']}_{f['format']}"
        pair = f["kind"] == "preference"
        entry: dict[str, Any] = {"file_name": f["path"], "formatting": f["format"]}
        if pair:
            entry["ranking"] = True
        if f["format"] == "alpaca":
            entry["columns"] = {
                "prompt": "instruction",
                "query": "input",
                "system": "system",
                "history": "history",
            }
            entry["columns"] |= (
                {"chosen": "chosen", "rejected": "rejected"} if pair else {"response": "output"}
            )
        else:
            entry["columns"] = {"messages": "conversations", "system": "system"}
            if pair:
                entry["columns"] |= {"chosen": "chosen", "rejected": "rejected"}
            entry["tags"] = {
                "role_tag": "from",
                "content_tag": "value",
                "user_tag": "human",
                "assistant_tag": "gpt",
                "system_tag": "system",
            }
        info[name] = entry
    return info


def axolotl_stanza(where: str, files: list[dict[str, Any]]) -> str:
    """The ``datasets:`` (and ``test_datasets:``) YAML for axolotl's ``chat_template`` loader."""
    lines = []
    for split, key in (("train", "datasets"), ("validation", "test_datasets")):
        chosen = [f for f in files if f["format"] == "trl_messages" and f["split"] == split]
        if not chosen:
            continue
        lines.append(f"{key}:")
        for f in chosen:
            lines += [
                f"  - path: {where.rstrip('/')}/{f['path']}",
                "    ds_type: json",
                "    type: chat_template",
                "    field_messages: messages",
                "    message_property_mappings: {role: role, content: content}",
                "    roles_to_train: [assistant]",
            ]
            if split == "validation":
                lines.append("    split: train")
    return "\n".join(lines)


# ---- what the consumers check -----------------------------------------------------------------------------


def _openai_messages(messages: Any, *, final: str | None) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            return "every message needs a role of system, user or assistant"
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            return "every message needs non-empty text content"
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        return "user and assistant turns must alternate"
    if final and roles[-1] != final:
        return f"the last turn must be {final}"
    return None


def problems(fmt: str, value: dict[str, Any], info: dict[str, Any] | None = None) -> str | None:
    """Why a written row would be refused by its consumer, or None. ``info``: its dataset_info entry."""
    if fmt in ("openai_chat", "trl_messages"):
        return _openai_messages(value.get("messages"), final="assistant")
    if fmt == "trl_prompt_completion":
        return _openai_messages(value.get("prompt"), final="user") or _openai_messages(
            value.get("completion"), final="assistant"
        )
    if fmt == "openai_dpo":
        return _openai_messages((value.get("input") or {}).get("messages"), final="user") or next(
            (
                f"{key} must be one non-empty assistant message"
                for key in ("preferred_output", "non_preferred_output")
                if _openai_messages(value.get(key), final="assistant") or len(value[key]) != 1
            ),
            None,
        )
    if fmt == "trl_preference":
        return (
            _openai_messages(value.get("prompt"), final="user")
            or _openai_messages(value.get("chosen"), final="assistant")
            or _openai_messages(value.get("rejected"), final="assistant")
        )
    if fmt in ("alpaca", "sharegpt"):
        return llamafactory_problem(value, info or {})
    raise ValueError(f"unknown format {fmt!r}")


def llamafactory_problem(value: dict[str, Any], info: dict[str, Any]) -> str | None:
    """LLaMA-Factory's converters' rules (``data/converter.py``): sharegpt turns alternate user/assistant tags
    (a system tag only first), a supervised example has an even number of turns and a ranked one an odd number
    with ``chosen``/``rejected`` answers; alpaca needs the prompt and the response columns."""
    columns, ranking = info.get("columns", {}), info.get("ranking", False)
    if info.get("formatting") == "sharegpt":
        tags = info.get("tags", {})
        messages = value.get(columns.get("messages", "conversations")) or []
        if messages and messages[0].get(tags.get("role_tag", "from")) == tags.get("system_tag", "system"):
            messages = messages[1:]
        accept = (tags.get("user_tag", "human"), tags.get("assistant_tag", "gpt"))
        for i, m in enumerate(messages):
            if m.get(tags.get("role_tag", "from")) != accept[i % 2]:
                return "Invalid role tag"
            if not str(m.get(tags.get("content_tag", "value"), "")).strip():
                return "empty content"
        if ranking:
            if len(messages) % 2 != 1:
                return "Invalid message count"
            for key in ("chosen", "rejected"):
                answer = value.get(columns.get(key, key)) or {}
                if answer.get(tags.get("role_tag", "from")) != accept[1]:
                    return "Invalid role tag"
        elif len(messages) == 0 or len(messages) % 2 != 0:
            return "Invalid message count"
        return None
    prompt = value.get(columns.get("prompt", "instruction"))
    if not isinstance(prompt, str) or not prompt.strip():
        return "empty instruction"
    answers = ("chosen", "rejected") if ranking else ("response",)
    for key in answers:
        answer = value.get(columns.get(key, "output" if key == "response" else key))
        if not isinstance(answer, str) or not answer.strip():
            return f"empty {key}"
    for pair in value.get(columns.get("history", "history")) or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            return "history must be [prompt, response] pairs"
    return None
