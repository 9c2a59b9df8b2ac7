"""Build the sample pretraining corpus from the sample handbook's text, with planted problems.

``python include/sample_data/corpus/build_corpus.py <folder>`` writes:

- ``crawl-000.jsonl``: real documents (the handbook's Markdown and text files, a document per section group),
  a near-duplicate of one (about 5% of words edited), one with planted PII, a page of repeated lines, a German
  document, an invalid JSON line, and a boilerplate footer line on several documents;
- ``crawl-001.jsonl.gz``: more documents and an exact copy of a document of ``crawl-000``;
- ``crawl-002.jsonl.zst`` (zstandard) and ``crawl-003.parquet``: the rest;
- ``crawl-004.jsonl.gz``: a truncated gzip file, which the feed must quarantine.

The planted items are listed in ``PLANTED`` so tests can check each one.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

HANDBOOK = Path(__file__).resolve().parents[1] / "handbook"
FOOTER = "Copyright 2026 Northwind Robotics. All rights reserved. Printed copies are not controlled."
GERMAN = (
    "Die Mitarbeiter können ihren Urlaub jederzeit über das Personalportal beantragen. Der Antrag wird von der "
    "zuständigen Führungskraft innerhalb von drei Arbeitstagen geprüft und genehmigt. Bitte beachten Sie, dass "
    "in den letzten beiden Wochen des Quartals nur in Ausnahmefällen Urlaub gewährt werden kann, weil in dieser "
    "Zeit die meisten Kundenprojekte abgeschlossen werden. Nicht genommene Urlaubstage können bis zum Ende des "
    "folgenden Jahres übertragen werden. Bei Fragen wenden Sie sich bitte an das Team der Personalabteilung, "
    "das Ihnen gerne bei der Planung Ihrer freien Tage hilft und alle weiteren Einzelheiten erklärt."
)
TICKET = (
    "Support ticket summary for the billing team.\n\n"
    "The customer wrote in on Monday because the annual renewal was charged twice. Please contact Maria at "
    "maria.gonzalez@northwind-robotics.com or her manager at j.smith@example.org, or call her on "
    "+1 (415) 555-0132 during office hours. The duplicate charge went to the card 4111 1111 1111 1111, and "
    "the refund should be sent by bank transfer to the IBAN DE89 3704 0044 0532 0130 00 instead.\n\n"
    "While looking into the account we also found that an access key had been pasted into a shared document. "
    "The key AKIAIOSFODNN7EXAMPLE was used from the address 192.168.14.27 and has now been revoked. The "
    "customer has been told that the refund takes five to seven business days to arrive, and that we will "
    "follow up with a written summary of the incident and the steps we took to protect the account."
)
PII = {
    "email": ["maria.gonzalez@northwind-robotics.com", "j.smith@example.org"],
    "phone": ["+1 (415) 555-0132"],
    "credit_card": ["4111 1111 1111 1111"],
    "iban": ["DE89 3704 0044 0532 0130 00"],
    "secret": ["AKIAIOSFODNN7EXAMPLE"],
    "ip_address": ["192.168.14.27"],
}
PLANTED = {
    "exact_copy": "crawl/copy-of-0",
    "near_duplicate": "crawl/near-dup-of-1",
    "pii": "crawl/pii-ticket",
    "repeated_lines": "crawl/junk-repeated",
    "wrong_language": "crawl/german-policy",
    "corrupt_shard": "crawl-004.jsonl.gz",
}


def handbook_documents() -> list[str]:
    """The handbook's prose, as documents of at least 80 words."""
    docs = []
    for path in sorted(HANDBOOK.rglob("*")):
        if path.suffix not in (".md", ".txt"):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = path.read_text(encoding="latin-1")
        current: list[str] = []
        for block in text.split("\n\n"):
            current.append(block.strip())
            if len(" ".join(current).split()) >= 120:
                docs.append("\n\n".join(current))
                current = []
        if len(" ".join(current).split()) >= 80:
            docs.append("\n\n".join(current))
    return docs


def edit_words(text: str, rate: float, seed: int) -> str:
    rng = random.Random(seed)
    words = text.split(" ")
    for _ in range(max(1, int(len(words) * rate))):
        i = rng.randrange(len(words))
        words[i] = rng.choice(["team", "policy", "request", "customer", "system"])
    return " ".join(words)


def build(folder: Path) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    docs = handbook_documents()
    records = [{"id": f"handbook-{i:03d}", "text": text} for i, text in enumerate(docs)]
    for record in records[:8]:
        record["text"] += "\n" + FOOTER
    first = records[: len(records) // 2]
    first += [
        {"id": "near-dup-of-1", "text": edit_words(records[1]["text"], 0.05, seed=1)},
        {"id": "pii-ticket", "text": TICKET},
        {"id": "junk-repeated", "text": "\n".join(["Click here to subscribe to our newsletter today!"] * 40)},
        {"id": "german-policy", "text": GERMAN},
    ]
    lines = [json.dumps(r) for r in first] + ['{"id": "broken-record", "text": "unterminated']
    (folder / "crawl-000.jsonl").write_text("\n".join(lines) + "\n")
    rest = records[len(records) // 2 :]
    third = len(rest) // 3
    second = rest[:third] + [{"id": "copy-of-0", "text": records[0]["text"]}]
    with gzip.open(folder / "crawl-001.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(r) for r in second) + "\n")
    payload = "\n".join(json.dumps(r) for r in rest[third : 2 * third]).encode() + b"\n"
    (folder / "crawl-002.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(payload))
    pq.write_table(pa.Table.from_pylist(rest[2 * third :]), folder / "crawl-003.parquet")
    whole = gzip.compress("\n".join(json.dumps(r) for r in records[:5]).encode())
    (folder / "crawl-004.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    return PLANTED


if __name__ == "__main__":
    build(Path(sys.argv[1]))
    print(f"wrote the sample corpus to {sys.argv[1]}")
