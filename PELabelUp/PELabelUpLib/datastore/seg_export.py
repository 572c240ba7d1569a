"""The final mask as a Slicer ``.seg.nrrd``, through ``PELabelUpLib.io.seg_nrrd`` when that module exists.

Expected contract of the writer: ``write_seg_nrrd(labels_zyx, geometry, path) -> Path`` with ``labels_zyx``
a ``uint8 (Z, Y, X)`` label map (0 = background, one segment per label value) on ``geometry`` (LPS mm).
Until the module exists the datastore writes the final mask as NIfTI only and logs so once; the index then
holds ``NULL`` for the ``.seg.nrrd`` path.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import Geometry

log = logging.getLogger(__name__)

WRITER_MODULE = f"{__package__.rpartition('.')[0]}.io.seg_nrrd"  # PELabelUpLib.io.seg_nrrd
WRITER_NAME = "write_seg_nrrd"


@cache
def seg_nrrd_writer() -> Callable[..., Any] | None:
    """The ``.seg.nrrd`` writer, or ``None`` when the io module does not provide one (yet)."""
    try:
        module = importlib.import_module(WRITER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != WRITER_MODULE:
            raise
        log.info("%s not available: final masks are stored as NIfTI only", WRITER_MODULE)
        return None
    writer = getattr(module, WRITER_NAME, None)
    if writer is None:
        log.warning("%s has no %s: final masks are stored as NIfTI only", WRITER_MODULE, WRITER_NAME)
    return writer


def write_final_seg_nrrd(labels_zyx: np.ndarray, geometry: Geometry, path: Path) -> Path | None:
    """Write ``path`` when a writer exists; returns it, or ``None`` when no writer is available."""
    writer = seg_nrrd_writer()
    if writer is None:
        return None
    writer(labels_zyx, geometry, path)
    if not path.is_file():
        raise RuntimeError(f"{WRITER_MODULE}.{WRITER_NAME} did not write {path}")
    return path
