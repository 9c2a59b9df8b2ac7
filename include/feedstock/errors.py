"""The errors the platform raises as one-line failures.

Each message is a single line that says what to fix, so a task or the CLI can show it as is instead of a
traceback. They live here, apart from the stages that raise them, so that a caller (the Airflow plugin, the
CLI) can catch them without importing pandera, a feed or an embedding client.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, described in one line."""


class ContractViolation(RuntimeError):
    """Too many rows broke a table's contract."""


class EmbeddingError(RuntimeError):
    """The embedding provider failed after its retries."""


class ReleaseConflict(RuntimeError):
    """Another run published a release while this one was being built."""


class IndexNotReady(RuntimeError):
    """Search before the first release, or on an empty index."""


class CommitConflict(RuntimeError):
    """Another run committed to a table after this run planned from it: the run must plan again."""
