"""The requests of the analysis worker (``pelabelup serve``, :mod:`.serve`) and its own stages; torch-free, so the
Slicer module's GUI process can write requests."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

#: the stage of the start-up line that says the models are loaded and requests are read
READY = "ready"
#: the stage of the last line of a request that failed
FAILED = "failed"


@dataclass(frozen=True)
class Request:
    """One analysis asked of the worker."""

    input: Path
    out: Path
    id: str
    #: a pulmonary-artery mask used as the territory instead of the artery model's, and its label in a label map
    arteries: Path | None = None
    arteries_label: int | str | None = None

    def to_json(self) -> str:
        """The request as one line of the protocol (no trailing newline)."""
        record: dict[str, object] = {"input": str(self.input), "out": str(self.out), "id": self.id}
        if self.arteries is not None:
            record["arteries"] = str(self.arteries)
        if self.arteries_label is not None:
            record["arteries_label"] = self.arteries_label
        return json.dumps(record, ensure_ascii=False)


#: the keys a request may hold, its fields (another key is a typo that would silently change the analysis: refused)
REQUEST_KEYS = tuple(f.name for f in fields(Request))


def parse_request(line: str) -> Request:
    """Read one request line.

    Raises:
        ValueError: not a JSON object with text ``input`` and ``out`` (and, if given, text ``id`` and
            ``arteries``; ``arteries_label`` a whole number from 1 or a segment's name), or a key not in
            :data:`REQUEST_KEYS`.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"request is not JSON: {line.strip()[:200]!r}") from exc
    if not isinstance(record, dict):
        raise ValueError(f"request must be a JSON object, got {line.strip()[:200]!r}")
    unknown = sorted(set(record) - set(REQUEST_KEYS))
    if unknown:
        raise ValueError(f"request has unknown keys {', '.join(map(repr, unknown))}: a request holds "
                         f"{', '.join(map(repr, REQUEST_KEYS))}")
    for key in ("input", "out"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f"request needs {key!r} as a non-empty path: {line.strip()[:200]!r}")
    out = Path(record["out"])
    request_id = record.get("id", out.name)
    if not isinstance(request_id, str) or not request_id:
        raise ValueError(f"request 'id' must be non-empty text, got {request_id!r}")
    arteries = record.get("arteries")
    if arteries is not None and (not isinstance(arteries, str) or not arteries.strip()):
        raise ValueError(f"request 'arteries' must be a non-empty path, got {arteries!r}")
    label = record.get("arteries_label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int | str)
                              or (isinstance(label, int) and label < 1) or (isinstance(label, str) and not label.strip())):
        raise ValueError(f"request 'arteries_label' must be a whole number from 1 or a segment name, got {label!r}")
    return Request(input=Path(record["input"]), out=out, id=request_id,
                   arteries=None if arteries is None else Path(arteries), arteries_label=label)
