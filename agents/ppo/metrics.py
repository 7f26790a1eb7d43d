"""Metrics sink: JSONL always, TensorBoard when it is installed.

>>> import json, tempfile, os
>>> folder = tempfile.mkdtemp()
>>> with MetricsLogger(folder, tensorboard=False) as log:
...     log.log(1, {"reward": 0.5})
>>> json.loads(open(os.path.join(folder, "metrics.jsonl")).read())
{'step': 1, 'reward': 0.5}
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

__all__ = ["MetricsLogger"]


class MetricsLogger:
    """Appends one JSON object per step to ``<folder>/metrics.jsonl`` (and TensorBoard scalars)."""

    def __init__(self, folder: str, tensorboard: bool = True):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "metrics.jsonl")
        self._handle = open(self.path, "a", encoding="utf-8")
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(os.path.join(folder, "tensorboard"))
            except ImportError:  # tensorboard is optional
                self._writer = None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()
        }
        self._handle.write(json.dumps({"step": step, **clean}) + "\n")
        self._handle.flush()
        if self._writer is not None:
            for name, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self._writer.add_scalar(name, value, step)

    def close(self) -> None:
        self._handle.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
