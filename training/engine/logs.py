"""Run logs: CSV files (one row per logged step or epoch, rank 0 only) and a one-line progress display.

TensorBoard is not a dependency; a CSV file opens in any spreadsheet, pandas or matplotlib.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from .distributed import DistContext

log = logging.getLogger(__name__)

ProgressMode = Literal["auto", "bar", "lines", "off"]


def setup_logging(ctx: DistContext, level: int = logging.INFO) -> None:
    """Log to stderr with the rank in each line; ranks other than 0 only report warnings and errors."""
    prefix = f"[rank {ctx.rank}] " if ctx.world_size > 1 else ""
    logging.basicConfig(level=level if ctx.is_main else max(level, logging.WARNING),
                        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


class CsvLogger:
    """Append rows to a CSV file; on rank 0 only (elsewhere every call does nothing).

    The columns are fixed by the first row (or by the header of the file being resumed); a later row with a
    column not in the header is refused, a missing column is left empty. Each row is flushed as written.

    Args:
        path: the CSV file.
        enabled: False on ranks other than 0.
        resume_step: None starts a new file (replacing an old one). An integer continues an existing file:
            rows whose ``step_column`` exceeds it (written after the checkpoint being resumed, then lost) are
            dropped first, so that the resumed run does not log them twice.
    """

    def __init__(self, path: str | Path, *, enabled: bool = True, resume_step: int | None = None,
                 step_column: str = "step") -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.step_column = step_column
        self.columns: list[str] | None = None
        self._file: Any = None
        self._writer: csv.DictWriter | None = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()

    def _truncate_after(self, resume_step: int) -> None:
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
        if not columns:
            self.path.unlink()
            return
        if self.step_column not in columns:
            raise ValueError(f"{self.path}: no {self.step_column!r} column to resume by (columns {columns})")
        kept = [row for row in rows if float(row[self.step_column]) <= resume_step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(kept)
        tmp.replace(self.path)
        self.columns = columns
        if len(kept) < len(rows):
            log.info("%s: dropped %d rows logged after step %d", self.path.name, len(rows) - len(kept),
                     resume_step)

    def log(self, **row: Any) -> None:
        """Write one row (values are written with ``str``; floats keep full precision)."""
        if not self.enabled:
            return
        if self._writer is None:
            new_file = self.columns is None
            if new_file:
                self.columns = list(row)
            self._file = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
            if new_file:
                self._writer.writeheader()
        unknown = [key for key in row if key not in self.columns]
        if unknown:
            raise ValueError(f"{self.path.name}: columns {unknown} are not among the fixed columns {self.columns}")
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None

    def __enter__(self) -> CsvLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """All rows of a CSV log as dictionaries (strings)."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


class Progress:
    """Progress of one epoch on one line: loss and samples/s.

    On rank 0 only. ``auto`` shows a tqdm bar when stderr is a terminal, else plain log lines at most every
    ``every_s`` seconds (and at the last step): batch logs stay readable. ``bar``/``lines`` force one,
    ``off`` shows nothing (samples/s is still measured).

    Args:
        total_steps: batches in the epoch (for the bar and the ``i/n`` count).
        desc: prefix, e.g. ``epoch 3/20``.
        start_step: steps already done (an epoch resumed part-way).
    """

    def __init__(self, total_steps: int, *, desc: str, enabled: bool = True, mode: ProgressMode = "auto",
                 every_s: float = 10.0, start_step: int = 0) -> None:
        if mode not in ("auto", "bar", "lines", "off"):
            raise ValueError(f"progress mode must be auto, bar, lines or off, got {mode!r}")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() and not os.environ.get("CI") else "lines"
        self.mode: ProgressMode = mode if enabled else "off"
        self.total_steps = total_steps
        self.desc = desc
        self.every_s = every_s
        self.steps = start_step
        self.samples = 0
        self._start = time.perf_counter()
        self._last_line = self._start
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="batch", dynamic_ncols=True,
                             leave=False)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._start

    @property
    def samples_per_s(self) -> float:
        """Samples (all ranks) per second since the start of the epoch."""
        return self.samples / max(self.seconds, 1e-9)

    def update(self, samples: int, **metrics: float) -> None:
        """One step done on ``samples`` samples (all ranks together); ``metrics`` are shown (e.g. loss)."""
        self.steps += 1
        self.samples += samples
        shown = metrics | {"samples/s": self.samples_per_s}
        if self._bar is not None:
            self._bar.set_postfix({k: _format(v) for k, v in shown.items()}, refresh=False)
            self._bar.update(1)
        elif self.mode == "lines":
            now = time.perf_counter()
            if now - self._last_line >= self.every_s or self.steps == self.total_steps:
                self._last_line = now
                text = " ".join(f"{k} {_format(v)}" for k, v in shown.items())
                log.info("%s step %d/%d: %s", self.desc, self.steps, self.total_steps, text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
