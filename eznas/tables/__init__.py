"""Every table eznas renders, in one place: Markdown and CSV for files, fixed-width text for the terminal.

- `eznas.tables.evaluations`: proxies x tasks (``eznas evaluate``, the baselines and held-out
  reports), bootstrap intervals, our figures against published ones;
- `eznas.tables.searches`: zero-shot NAS results over seeds, with the published search results;
- `eznas.tables.runs`: a run's hall of fame and Pareto front (``eznas inspect``, ``front.csv``);
- `eznas.tables.zoo`: proxies on timm's model zoo against published ImageNet top-1, and their cost.

Rendering only: the numbers come from `eznas.evaluate`, `eznas.search` and `eznas.report`, and
files are written with `eznas.files.write_atomic`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any


def format_number(value: Any, digits: int = 4) -> str:
    """A table cell: a float with ``digits`` decimals, "–" for NaN; anything else as ``str``."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text of ``rows`` (dicts; keys outside ``columns`` are left out), full precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
