"""Data contracts: pandera schemas for the tables at each stage boundary, and the check that applies them.

:func:`check` splits a batch into the rows that pass and the rows that fail, with the failing check as a
machine-readable reason (``contract:<column>:<check>``). The caller quarantines the failures and calls
:func:`enforce_ratio`, which fails the run when the share of failing rows is past the configured ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.pandas as pa_schema
import pyarrow as pa
from pandera.errors import SchemaErrors

from feedstock.errors import ContractViolation

MIME_TYPES = [
    "text/plain",
    "text/markdown",
    "text/html",
    "application/pdf",
    "application/json",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
]


def _non_blank(series):  # noqa: ANN001 - pandera passes a pandas Series
    return series.fillna("").str.strip().str.len() > 0


BRONZE_DOCUMENTS = pa_schema.DataFrameSchema(
    {
        "doc_id": pa_schema.Column(str, pa_schema.Check.str_matches(r"^[a-z][a-z0-9_]*/.+"), unique=True),
        "source": pa_schema.Column(str),
        "uri": pa_schema.Column(str),
        "title": pa_schema.Column(str, nullable=True),
        "text": pa_schema.Column(str, pa_schema.Check(_non_blank, element_wise=False, name="non_blank")),
        "mime_type": pa_schema.Column(str, pa_schema.Check.isin(MIME_TYPES)),
        "content_hash": pa_schema.Column(str, pa_schema.Check.str_matches(r"^[0-9a-f]{64}$")),
        "doc_version": pa_schema.Column(int, pa_schema.Check.ge(1)),
        "is_deleted": pa_schema.Column(bool, pa_schema.Check.eq(False)),
    },
    name="bronze.documents",
    strict=False,
    coerce=False,
)


# The pretraining feed's documents after the document-level stages, before dedup and tokenization.
PRETRAIN_DOCUMENTS = pa_schema.DataFrameSchema(
    {
        "doc_id": pa_schema.Column(str, pa_schema.Check.str_matches(r"^[a-z][a-z0-9_]*/.+"), unique=True),
        "source": pa_schema.Column(str, pa_schema.Check.str_matches(r"^[a-z][a-z0-9_]*$")),
        "text": pa_schema.Column(str, pa_schema.Check(_non_blank, element_wise=False, name="non_blank")),
        "lang": pa_schema.Column(str, nullable=True),
        "lang_score": pa_schema.Column(float, pa_schema.Check.in_range(0, 1), nullable=True),
    },
    name="pretrain.documents",
    strict=False,
    coerce=False,
)

# The fine-tuning feed's examples after the per-example stages, before dedup, selection and split.
FINETUNE_EXAMPLES = pa_schema.DataFrameSchema(
    {
        "example_id": pa_schema.Column(str, pa_schema.Check.str_matches(r"^[0-9a-f]{24}$"), unique=True),
        "source": pa_schema.Column(str, pa_schema.Check.str_matches(r"^[a-z][a-z0-9_]*$")),
        "record_id": pa_schema.Column(str, pa_schema.Check.str_matches(r"^[a-z][a-z0-9_]*/.+")),
        "kind": pa_schema.Column(str, pa_schema.Check.isin(["sft", "preference"])),
        "tokens": pa_schema.Column(int, pa_schema.Check.ge(1)),
        "score": pa_schema.Column("float32", pa_schema.Check.ge(0)),
    },
    name="finetune.examples",
    strict=False,
    coerce=False,
)


def bronze_warehouse(key: str) -> pa_schema.DataFrameSchema:
    """Rows of a warehouse table: a present, unique key and a known operation."""
    return pa_schema.DataFrameSchema(
        {
            key: pa_schema.Column(nullable=False, unique=True),
            "_op": pa_schema.Column(str, pa_schema.Check.isin(["insert", "update", "delete"])),
        },
        name="bronze.warehouse",
        strict=False,
    )


@dataclass
class CheckResult:
    passed: pa.Table
    failed_rows: list[int]  # row positions in the input
    reasons: list[str]  # one per failed row

    @property
    def checked(self) -> int:
        return self.passed.num_rows + len(self.failed_rows)


def check(table: pa.Table, schema: pa_schema.DataFrameSchema) -> CheckResult:
    """Validate a batch lazily (every failure, not just the first) and split it into passed and failed rows."""
    columns = [c for c in table.column_names if c in schema.columns]
    frame = table.select(columns).to_pandas(types_mapper=None)
    try:
        schema.validate(frame, lazy=True)
        return CheckResult(table, [], [])
    except SchemaErrors as errors:
        cases = errors.failure_cases
    reasons: dict[int, str] = {}
    table_wide = []
    for case in cases.itertuples(index=False):
        reason = f"contract:{case.column or 'table'}:{case.check}"
        if case.index is None or case.index != case.index:  # a column-level failure (missing or wrong dtype)
            table_wide.append(reason)
            continue
        reasons.setdefault(int(case.index), reason)
    if table_wide:
        reasons = {row: table_wide[0] for row in range(table.num_rows)}
    failed = sorted(reasons)
    keep = pa.array([i not in reasons for i in range(table.num_rows)])
    return CheckResult(table.filter(keep), failed, [reasons[i] for i in failed])


def enforce_ratio(name: str, failed: int, checked: int, max_failure_ratio: float) -> None:
    if checked and failed / checked > max_failure_ratio:
        raise ContractViolation(
            f"{name}: {failed} of {checked} rows ({failed / checked:.1%}) broke the contract, over the "
            f"configured max_failure_ratio of {max_failure_ratio:.1%}; see the quarantine table for reasons"
        )
