"""Progress of an analysis: events, the JSON-lines protocol a parent process reads, a human progress bar.

The protocol (``pelabelup analyze --progress json``): one JSON object per line on stdout, nothing else there::

    {"stage": "classifier", "fraction": 0.345, "message": "classifying slices"}

``stage`` names the step (:data:`STAGES`), ``fraction`` is the overall completion in [0, 1] and never decreases,
``message`` is one line for people. Batch runs add ``input`` (the input's output name), ``index`` (0-based
position in this process's share) and ``total`` (the share's size), and under ``torchrun`` ``rank`` (the
lines of all ranks interleave on torchrun's stdout; fractions rise per rank). The last line of a successful run has
``fraction`` 1.0 and stage ``done``. A parent (the Slicer module) parses lines with :func:`parse_progress_line`.
This module imports neither torch nor Qt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

#: the stages of one analysis, in order
STAGES = ("load", "models", "arteries", "classifier", "pseudomask", "segmenter", "write", "done")

#: ``progress(stage, fraction, message)``: the callback the core calls (the label-up chain's signature)
Progress = Callable[[str, float, str], None]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress line (see the module docstring)."""

    stage: str
    fraction: float
    message: str
    input: str | None = None
    index: int | None = None
    total: int | None = None
    rank: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fraction, (int, float)) or not 0.0 <= float(self.fraction) <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {self.fraction!r}")
        if "\n" in self.message or "\r" in self.message:
            raise ValueError(f"message must be one line, got {self.message!r}")

    def to_json(self) -> str:
        """One line of JSON (no trailing newline); ``None`` fields are left out."""
        record = {k: v for k, v in asdict(self).items() if v is not None}
        record["fraction"] = round(float(self.fraction), 4)
        return json.dumps(record, ensure_ascii=False)


def parse_progress_line(line: str) -> ProgressEvent:
    """Read one line of the protocol.

    Raises:
        ValueError: not JSON, not an object, or lacking ``stage``/``fraction``/``message``.
    """
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a progress line (invalid JSON): {line[:200]!r}") from exc
    if not isinstance(record, dict) or not {"stage", "fraction", "message"} <= set(record):
        raise ValueError(f"not a progress line (needs stage, fraction, message): {line[:200]!r}")
    known = {k: record[k] for k in ("stage", "fraction", "message", "input", "index", "total", "rank") if k in record}
    return ProgressEvent(**known)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


class ScaledProgress:
    """Maps a step's own ``[0, 1]`` progress into ``[start, end]`` of the overall fraction, never decreasing."""

    def __init__(self, sink: Progress, start: float = 0.0, end: float = 1.0) -> None:
        self.sink, self.start, self.end = sink, float(start), float(end)
        self.last = float(start)

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        overall = self.start + (self.end - self.start) * min(1.0, max(0.0, float(fraction)))
        self.last = max(self.last, overall)
        self.sink(stage, self.last, message)


class JsonLinesProgress:
    """Writes each event as one JSON line to ``stream`` (flushed at once, so a parent sees it live).

    Fractions are clamped to be non-decreasing. ``context`` (``input``, ``index``, ``total``, ``rank``) is set
    by the batch runner for the input in progress.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0
        self.context: dict[str, Any] = {}

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        fraction = fraction if math.isfinite(fraction) else 0.0
        self.last = max(self.last, min(1.0, max(0.0, float(fraction))))
        event = ProgressEvent(stage=stage, fraction=self.last, message=_one_line(message), **self.context)
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()

    def restart(self, **context: Any) -> None:
        """Begin another run on the same stream (``pelabelup serve``'s next request): fractions rise from 0 again,
        and every line carries ``context``."""
        self.last = 0.0
        self.context = dict(context)

    def close(self) -> None:
        self.stream.flush()


class HumanProgress:
    """A tqdm bar on ``stream`` (stderr): percent, stage and message, elapsed time.

    ``disable=None`` shows it only when ``stream`` is a terminal, so a piped stderr holds nothing but errors.
    The bar is erased when closed.
    """

    def __init__(self, stream: TextIO, *, disable: bool | None = None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=1000, file=stream, disable=disable, leave=False, dynamic_ncols=True, mininterval=0,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self.bar.set_description_str("analyze")
        self.done = 0
        self.context: dict[str, Any] = {}

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        target = int(round(1000 * min(1.0, max(0.0, float(fraction)))))
        prefix = ""
        if self.context.get("input") is not None:
            prefix = f"[{self.context['index'] + 1}/{self.context['total']} {self.context['input']}] "
        self.bar.set_description_str(f"{prefix}{stage}", refresh=False)
        self.bar.set_postfix_str(_one_line(message)[:60], refresh=False)
        if target > self.done:
            self.bar.update(target - self.done)
            self.done = target
        else:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
