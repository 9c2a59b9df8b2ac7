"""Human review in Label Studio, as a file round trip (no Label Studio server is needed).

:func:`write_tasks` writes a JSON file of tasks and the labeling config that shows them
(``feedstock finetune review-tasks``): a task with ``prompt`` and ``response`` asks a reviewer to *accept* or
*reject* the answer; a task with ``prompt``, ``answer1`` and ``answer2`` asks which answer is better (Label
Studio's ``Pairwise`` tag). Import both into a Label Studio project, review, and export the project as JSON;
a ``dataset`` source with ``schema: labelstudio`` reads that export back (:mod:`feedstock.finetune.records`).

The export keeps each task's ``data`` and adds ``annotations``, each with a ``result`` list: a ``choices`` result
(``{"choices": ["accept"]}``) or a ``pairwise`` one (``{"selected": "left"}``). :func:`verdict` takes the latest
annotation that was not cancelled.
"""

from __future__ import annotations

import json
from typing import Any

LABEL_CONFIG_SFT = """<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Response"/>
  <Text name="response" value="$response"/>
  <Choices name="review" toName="response" choice="single" showInline="true" required="true">
    <Choice value="accept"/>
    <Choice value="reject"/>
  </Choices>
</View>
"""
LABEL_CONFIG_PAIRWISE = """<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Pairwise name="rank" toName="answer1,answer2" selectionStyle="background-color: #BFD8F3"/>
  <Text name="answer1" value="$answer1"/>
  <Text name="answer2" value="$answer2"/>
</View>
"""


def tasks(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio tasks from ``{id?, prompt, response}`` (accept/reject) or ``{id?, prompt, answer1, answer2}``
    (pairwise) records; ``system`` is carried along."""
    out = []
    for number, record in enumerate(records, start=1):
        data = {
            k: v
            for k, v in record.items()
            if k in ("id", "system", "prompt", "response", "answer1", "answer2")
        }
        data.setdefault("id", number)
        out.append({"id": data["id"], "data": data})
    return out


def write_tasks(records: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """Write ``path`` (the tasks) and ``<path>.label_config.xml`` (the labeling interface); return counts."""
    from feedstock.lake import filesystem

    written = tasks(records)
    pairwise = any("answer1" in t["data"] for t in written)
    fs, local = filesystem(path)
    with fs.open(local, "w", encoding="utf-8") as handle:
        json.dump(written, handle, ensure_ascii=False, indent=1)
    config = path.rsplit(".", 1)[0] + ".label_config.xml"
    fs, local = filesystem(config)
    with fs.open(local, "w", encoding="utf-8") as handle:
        handle.write(LABEL_CONFIG_PAIRWISE if pairwise else LABEL_CONFIG_SFT)
    return {
        "tasks": len(written),
        "kind": "pairwise" if pairwise else "accept_reject",
        "label_config": config,
    }


def verdict(task: dict[str, Any]) -> str:
    """``accept``, ``rejected``, ``left``, ``right`` or ``not_reviewed``: the latest live annotation's decision."""
    annotations = [
        a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")
    ]
    for annotation in reversed(annotations):
        for result in annotation.get("result") or []:
            value = result.get("value") or {}
            if result.get("type") == "pairwise" and value.get("selected") in ("left", "right"):
                return value["selected"]
            if result.get("type") == "choices" and value.get("choices"):
                return "accept" if value["choices"][0] == "accept" else "rejected"
    return "not_reviewed"
