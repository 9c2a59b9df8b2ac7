"""Writes the sample fine-tuning data: a chat dataset with planted problems, preference pairs and a Label Studio
export of reviewed pairs. Deterministic; run it again after editing it: ``python build_finetune.py``.

Planted in ``chat.jsonl`` (and what the feed must do with each, by record id):

- ``bad-roles`` two user turns in a row: ``format:roles_not_alternating``
- ``bad-empty`` an empty answer: ``format:empty_content``
- ``bad-last`` a conversation ending with the user: ``format:last_not_assistant``
- ``bad-role-name`` a ``bot`` role: ``format:unknown_role``
- line 25 is not JSON: ``format:invalid_json``
- ``dup-exact`` a copy of ``good-01``: ``dedup:exact``
- ``dup-near`` ``good-02``'s question with two words changed and another answer: ``dedup:near_duplicate``
- ``pii-answer`` an answer with an e-mail address and a phone number: kept, both redacted
- ``leak-golden`` a RAG golden-set question: ``decontamination:handbook``
- ``echo`` the answer repeats the question: ``quality:prompt_equals_response``
- ``short`` a one-word answer: ``quality:response_too_short``
- ``loop`` an answer of one repeated line: ``quality:repetition``
- ``too-long`` an answer over the 4,096-token limit: ``length:over_max_tokens``
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SYSTEM = "You are Northwind Cloud's support assistant. Answer precisely and briefly."

GOOD = [
    (
        "How do I rotate the API key of a Relay workspace?",
        "Open Settings > API keys, click Rotate next to the key and confirm. The old key keeps working for 24 hours "
        "so you can update your clients, then it is revoked.",
    ),
    (
        "Which destinations does Relay support for change data capture pipes?",
        "CDC pipes can write to Snowflake, BigQuery, Databricks, Redshift and PostgreSQL. Other destinations receive "
        "full or incremental syncs instead.",
    ),
    (
        "Can I pause a pipe without losing its sync position?",
        "Yes. Pausing a pipe keeps its cursor, so when you resume it continues from the last synced position. A pipe "
        "paused for more than 7 days needs a re-sync if the source no longer holds the change log.",
    ),
    (
        "How long does Relay Vault keep snapshots on the Standard tier?",
        "Vault Standard keeps snapshot history for 30 days with 1 TB of storage included. Vault Plus extends "
        "retention to 13 months.",
    ),
    (
        "What does a blinking amber LED mean on an Edge appliance?",
        "Blinking amber means the appliance is applying a firmware update. Do not power it off; the update finishes "
        "within about ten minutes and the LED turns solid green.",
    ),
    (
        "How are monthly active rows counted when a table is re-synced?",
        "A full re-sync counts every row of the table again for that month, because each row is written to the "
        "destination. Incremental syncs count only the rows that changed.",
    ),
    (
        "Is single sign-on available on the Starter plan?",
        "SSO with SAML 2.0 is available on Business and Enterprise. Starter workspaces use e-mail and password logins "
        "with optional two-factor authentication.",
    ),
    (
        "How do I add a second workspace admin?",
        "Go to Settings > Members, open the member's menu and choose Make admin. We recommend at least two admins so "
        "that access never depends on one person.",
    ),
    (
        "Why did my MySQL CDC pipe fail with binlog position not found?",
        "The binlog file was purged before Relay read it. Raise binlog_expire_logs_seconds to at least 72 hours and "
        "re-sync the affected tables.",
    ),
    (
        "Can Relay connect to a database in a private subnet?",
        "Yes: allow-list the Relay egress IP addresses for your region, or connect through an SSH tunnel via a bastion "
        "host. PrivateLink is available for Snowflake and Databricks destinations.",
    ),
    (
        "How do I restore a table from Vault to yesterday's version?",
        "In Vault Explorer open the table, pick yesterday's snapshot and click Restore. Choose New table to write it "
        "beside the original with a _restored suffix, so you can compare first.",
    ),
    (
        "What is included in Premier support?",
        "Premier support adds 24/7 phone support, a named Technical Account Manager and quarterly service reviews, "
        "with a one-hour response target for severity 1 incidents.",
    ),
]
MULTI_TURN = [
    [
        (
            "How do I schedule a pipe to run every hour?",
            "Open the pipe, choose Schedule and set the interval to 1 hour. Business and Enterprise plans allow intervals "
            "down to 15 minutes and 1 minute respectively.",
        ),
        (
            "And on the Starter plan?",
            "Starter syncs at most every 6 hours, so the shortest schedule you can set there is 6 hours.",
        ),
    ],
    [
        (
            "Our invoices go to a former employee. How do we change the billing contact?",
            "An admin can change it under Settings > Billing > Billing contact. Invoices from the next cycle go to the "
            "new address.",
        ),
        (
            "Can we send invoices to two addresses?",
            "Yes, add a second address in the CC field of the billing contact; both receive every invoice.",
        ),
    ],
]


def conversation(prompt: str, answer: str, system: bool = False) -> list[dict]:
    turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return ([{"role": "system", "content": SYSTEM}] if system else []) + turns


def _changelog() -> str:
    """About 5,000 tokens of varied (not repetitive) text: only the length stage should reject it."""
    rng = random.Random(7)
    words = (
        "sync connector pipe schema table column destination source latency retry batch cursor snapshot "
        "vault edge appliance firmware region workspace member billing invoice audit export restore cdc "
        "binlog replica throughput buffer alert webhook token rotation sandbox promotion row pack"
    ).split()
    return " ".join(f"{rng.choice(words)}{rng.randint(0, 999)}" for _ in range(2_500))


def chat_lines() -> list[str]:
    records = []
    for i, (q, a) in enumerate(GOOD, start=1):
        records.append({"id": f"good-{i:02d}", "messages": conversation(q, a, system=i % 3 == 0)})
    for i, pairs in enumerate(MULTI_TURN, start=1):
        messages = [{"role": "system", "content": SYSTEM}]
        for q, a in pairs:
            messages += conversation(q, a)
        records.append({"id": f"multi-{i:02d}", "messages": messages})
    q1, a1 = GOOD[0]
    q2, _ = GOOD[1]
    planted = [
        {
            "id": "bad-roles",
            "messages": [
                {"role": "user", "content": "Hello"},
                {"role": "user", "content": "Is anyone there to help with Vault?"},
                {"role": "assistant", "content": "Yes, how can I help you with Vault today?"},
            ],
        },
        {"id": "bad-empty", "messages": conversation("What is the SLA of Relay Enterprise?", "")},
        {
            "id": "bad-last",
            "messages": [*conversation(q1, a1), {"role": "user", "content": "Thanks, and then?"}],
        },
        {
            "id": "bad-role-name",
            "messages": [
                {"role": "user", "content": "What ports does Edge need open?"},
                {"role": "bot", "content": "Outbound 443 to the control plane."},
            ],
        },
        {"id": "dup-exact", "messages": conversation(q1, a1)},
        {
            "id": "dup-near",
            "messages": conversation(
                q2.replace("Which destinations", "What destinations").replace("pipes", "pipelines"),
                "Snowflake, BigQuery, Databricks, Redshift and PostgreSQL accept CDC pipes.",
            ),
        },
        {
            "id": "pii-answer",
            "messages": conversation(
                "Who do I contact about an overdue invoice?",
                "Write to our billing team at billing.desk@northwind-example.com or call +1 415 555 0142 on weekdays "
                "between 9:00 and 17:00 Pacific time.",
            ),
        },
        {
            "id": "leak-golden",
            "messages": conversation(
                "How many days of PTO do new employees get?",
                "New employees get 20 days of paid time off per year, accrued monthly.",
            ),
        },
        {
            "id": "echo",
            "messages": conversation(
                "Please confirm the workspace region is eu-west-1.",
                "Please confirm the workspace region is eu-west-1.",
            ),
        },
        {"id": "short", "messages": conversation("Is Vault Compliance WORM by default?", "Yes.")},
        {
            "id": "loop",
            "messages": conversation(
                "List the steps to reset a pipe.",
                "\n".join(["Click the reset button and wait for the pipe."] * 12),
            ),
        },
        {"id": "too-long", "messages": conversation("Paste the full changelog of Relay.", _changelog())},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records + planted]
    lines.insert(24, '{"id": "broken-json", "messages": [')  # line 25: not JSON
    return lines


PAIRS = [
    (
        "How should we size an Edge appliance for 100 MB/s of CDC?",
        "Choose the E300: it sustains about 180 MB/s, so 100 MB/s leaves headroom for peaks. The E100 tops out near "
        "40 MB/s.",
        "Any appliance works.",
    ),
    (
        "What happens to unused rows in a Row Pack at the end of the month?",
        "Unused rows from a Row Pack do not roll over; they expire at the end of the billing month.",
        "They roll over forever and you can sell them back to us.",
    ),
    (
        "Can I test a pipe before it writes to production?",
        "Yes, use a sandbox workspace: sandbox syncs do not count towards monthly active rows, and you promote the "
        "pipe to production when it works.",
        "No, every pipe writes to production immediately.",
    ),
]


def preference_lines() -> list[str]:
    records = [
        {"id": f"pair-{i:02d}", "prompt": q, "chosen": good, "rejected": bad}
        for i, (q, good, bad) in enumerate(PAIRS, start=1)
    ]
    records.append(
        {
            "id": "pair-same",
            "prompt": "Does Relay support Oracle sources?",
            "chosen": "Yes, through LogMiner-based CDC.",
            "rejected": "Yes, through LogMiner-based CDC.",
        }
    )
    records.append(
        {
            "id": "pair-bad-prompt",
            "prompt": [
                {"role": "user", "content": "Is there a free trial?"},
                {"role": "assistant", "content": "Yes, 14 days."},
            ],
            "chosen": "It lasts 14 days with every feature.",
            "rejected": "No.",
        }
    )
    return [json.dumps(r, ensure_ascii=False) for r in records]


def review_export() -> list[dict]:
    """What Label Studio exports after review of the tasks ``feedstock finetune review-tasks`` wrote."""

    def choice(value: str) -> list[dict]:
        return [
            {
                "result": [
                    {
                        "type": "choices",
                        "from_name": "review",
                        "to_name": "response",
                        "value": {"choices": [value]},
                    }
                ],
                "was_cancelled": False,
            }
        ]

    return [
        {
            "id": 1,
            "data": {
                "id": "rev-1",
                "prompt": "How do I export the audit log?",
                "response": "Admins can export it under Settings > Security > Audit log as CSV or JSON, "
                "for up to 400 days back.",
            },
            "annotations": choice("accept"),
        },
        {
            "id": 2,
            "data": {
                "id": "rev-2",
                "prompt": "Does Relay encrypt data at rest?",
                "response": "Yes. Data at rest is encrypted with AES-256, and Vault Compliance supports "
                "bring-your-own-key.",
            },
            "annotations": choice("accept"),
        },
        {
            "id": 3,
            "data": {
                "id": "rev-3",
                "prompt": "Can I downgrade from Business to Starter mid-cycle?",
                "response": "Sure, whenever you like, and we refund everything.",
            },
            "annotations": choice("reject"),
        },
        {
            "id": 4,
            "data": {
                "id": "rev-4",
                "prompt": "How fast is support on the Business plan?",
                "answer1": "Priority support answers within 4 business hours, and severity 1 issues "
                "within 1 hour.",
                "answer2": "Support is quick.",
            },
            "annotations": [
                {
                    "result": [
                        {
                            "type": "pairwise",
                            "from_name": "rank",
                            "to_name": "answer1,answer2",
                            "value": {"selected": "left"},
                        }
                    ],
                    "was_cancelled": False,
                }
            ],
        },
        {
            "id": 5,
            "data": {
                "id": "rev-5",
                "prompt": "Where are Relay's data centers?",
                "response": "In the US, the EU and Australia.",
            },
            "annotations": [],
        },
    ]


if __name__ == "__main__":
    (HERE / "chat.jsonl").write_text("\n".join(chat_lines()) + "\n")
    (HERE / "preferences.jsonl").write_text("\n".join(preference_lines()) + "\n")
    (HERE / "review_export.json").write_text(json.dumps(review_export(), indent=1, ensure_ascii=False) + "\n")
