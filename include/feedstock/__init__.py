"""feedstock: turn a company's own documents and warehouse tables into LLM data feeds.

This package is plain Python with no Airflow imports; the DAGs in ``dags/`` wire its functions together.
"""

from __future__ import annotations

__version__ = "0.1.0"

import os as _os

# Nothing downloads at run time, and a task's stderr is logged at ERROR level: models and tokenizers load from
# installed packages, offline and without progress bars, whatever the shell that started the process exported.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
    _os.environ.setdefault(_name, "1")
