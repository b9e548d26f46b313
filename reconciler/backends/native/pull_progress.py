"""A pull's (or a load's) progress reports: the value the pipeline sends and the CLI draws.

Where it sits: at the bottom of the image side, imported by :mod:`layer_pipeline` (which sends the
reports) and :mod:`images` (whose callers pass the callback) without either importing the other's
dependencies. It holds values only: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True, slots=True)
class PullProgress:
    """One progress report: ``status`` is waiting|exists|downloading|downloaded|extracting|done."""

    layer: str
    index: int
    count: int
    status: str
    current: int = 0
    total: int = 0
    resumed_from: int = 0


ProgressCallback = Callable[[PullProgress], None]
