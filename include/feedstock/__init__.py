"""feedstock: turn a company's own documents and warehouse tables into LLM data feeds.

This package is plain Python with no Airflow imports; the DAGs in ``dags/`` wire its functions together.
"""

from __future__ import annotations

__version__ = "0.1.0"
