"""The data card of a fine-tuning release: ``README.md`` beside its files, generated from the release's stats.

It shows the funnel (examples in and out of each stage), the reject reasons, the splits, the sources, the
token-length histogram, the files with their formats, and how to load them: LLaMA-Factory through the release's
``dataset_info.json``, axolotl through the ``datasets:`` stanza, TRL and OpenAI from the JSONL files.
"""

from __future__ import annotations

from typing import Any

from feedstock.finetune.exports import axolotl_stanza
from feedstock.stages.tokenizers import histogram_bars


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    if not rows:
        return "_none_"
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
    ]
    lines += [
        "| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |" for row in rows
    ]
    return "\n".join(lines)


def data_card(stats: dict[str, Any], files: list[dict[str, Any]], where: str) -> str:
    funnel = [(f["stage"], f["in"], f["out"], f["in"] - f["out"]) for f in stats["funnel"]]
    reasons = sorted(stats["rejects_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    bars = histogram_bars(stats["token_histogram"])
    quarantined = [(q["source"], q["file"], q["reason"]) for q in stats["files_quarantined"]]
    stanza = axolotl_stanza(where, files)
    return f"""# Fine-tuning release {stats["release"]}

{stats["examples_published"]:,} examples published ({stats["tokens"]:,} tokens) of {stats["examples_in"]:,} new
examples read; {stats["examples_rejected"]:,} rejected with a reason; {stats["unchanged"]:,} already processed by
an earlier release. `examples_in = published + rejected`.

## Funnel

{_table(("stage", "in", "out", "rejected"), funnel)}

## Reject reasons

{_table(("reason", "examples"), reasons)}

## Splits

{_table(("split / kind", "examples"), sorted(stats["kinds"].items()))}

Splits are drawn per group of similar prompts (LSH candidates at estimated Jaccard >= 0.25), so near-duplicates
never straddle train and validation.

## Sources

{_table(("source", "examples"), sorted(stats["by_source"].items()))}

## Token lengths

{_table(("tokens", "examples", ""), bars)}

## PII redacted

{_table(("type", "spans"), sorted(stats["pii"].items()))}

## Quarantined files

{_table(("source", "file", "reason"), quarantined)}

## Files

{_table(("file", "format", "kind", "split", "examples", "tokens", "access tags"), [(f["path"], f["format"], f["kind"], f["split"], f["examples"], f["tokens"], ", ".join(f.get("access_tags") or ()) or "none") for f in files])}

A file's access tags are every tag of the sources its examples came from: train on it only where all of them
are allowed.

## Loading it

- **TRL**: `load_dataset("json", data_files={{"train": "{where}/trl_messages/train.jsonl"}})` for `SFTTrainer`;
  `trl_preference/train.jsonl` for `DPOTrainer`; `trl_prompt_completion` for completion-only loss.
- **OpenAI**: upload `openai_chat/train.jsonl` (and `openai_dpo/train.jsonl` for preference fine-tuning).
- **LLaMA-Factory**: `dataset_dir: {where}` with `dataset: feedstock_sft_train_sharegpt` (every file is
  registered in `dataset_info.json`).
- **axolotl**:

```yaml
{stanza or "# no trl_messages files in this release"}
```
"""
