"""The output folder of one analysis, written whole or not at all.

Everything is written into a hidden sibling ``.<name>.partial-<random>/`` and renamed to ``<name>/`` at the
end, so a reader (the Slicer module, a batch resuming) sees either no folder or a complete one. Any exception
-- an error, Ctrl-C, SIGTERM turned into :class:`~.interrupt.Terminated` -- removes the partial folder. A
process killed without a chance to clean up (SIGKILL, power loss) leaves the hidden folder;
:func:`remove_partial_folders` clears those (the batch runner does before it redoes an input).

Files (every image on the input's exact grid: size, spacing, origin, direction):
``result.json``, ``heatmap.nii.gz`` (float32 in [0, 1]), ``pseudomask.nii.gz``, ``segmentation.nii.gz``
(uint8 0/1), ``arteries.nii.gz`` (uint8 0/1, the artery territory), ``segmentation.seg.nrrd`` (Slicer) and, for
a DICOM input, ``segmentation.dcm``: the same segments as a DICOM SEG referencing the source images
(:mod:`PELabelUpLib.io.dicom_seg`; ``result.json``'s ``files`` names it when it was written). The SEG is an extra:
when it cannot be made (source images lacking what a SEG must copy, highdicom not installed) the analysis is
written without it, ``result.json``'s ``dicom_seg_error`` says why, and a warning is logged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import InputError
from ..io import write_volume
from ..io.dicom_seg import write_dicom_seg
from ..io.seg_nrrd import write_seg_nrrd
from ..labelup.outputs import write_labelup_outputs
from ..volume import CTVolume
from .progress import Progress
from .segments import analysis_segments

if TYPE_CHECKING:  # the pipeline imports torch; writing outputs does not need it
    from ..labelup.pipeline import LabelUpResult, LabelUpSettings

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
OUTPUT_FILES = {
    "result": RESULT_FILE,
    "heatmap": "heatmap.nii.gz",
    "pseudomask": "pseudomask.nii.gz",
    "segmentation": "segmentation.nii.gz",
    "arteries": "arteries.nii.gz",
    "seg_nrrd": "segmentation.seg.nrrd",
}
#: written beside the others for a DICOM input (listed in ``result.json``'s ``files`` then)
DICOM_SEG_FILE = "segmentation.dcm"
PARTIAL_MARK = ".partial-"


def is_complete(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a finished analysis (folders only appear complete, see the module doc)."""
    return (Path(out_dir) / RESULT_FILE).is_file()


def partial_folders(out_dir: str | Path) -> list[Path]:
    """Hidden partial folders of ``out_dir`` left by killed runs (``.<name>.partial-*`` beside it)."""
    out = Path(out_dir)
    if not out.parent.is_dir():
        return []
    return sorted(out.parent.glob(f".{out.name}{PARTIAL_MARK}*"))


def remove_partial_folders(out_dir: str | Path) -> int:
    """Remove what :func:`partial_folders` lists; returns how many. Never touch a folder a live run writes."""
    found = partial_folders(out_dir)
    for folder in found:
        log.info("removing a partial output left by an interrupted run: %s", folder)
        shutil.rmtree(folder, ignore_errors=True)
    return len(found)


def check_output_free(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path, refused (one-line :class:`InputError`) when something is there already, or when it
    could not be written: its nearest existing ancestor is not a folder, or not writable. Nothing is created, so
    an analysis that fails later leaves nothing behind; but a bad output path fails before the analysis runs."""
    out = Path(out_dir)
    if out.exists():
        raise InputError(out, "output folder exists already (remove it or choose another --out)")
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(out, f"cannot be created: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(out, f"cannot be created: no permission to write in {ancestor}")
    return out


@contextmanager
def staged_output(out_dir: str | Path) -> Iterator[Path]:
    """A folder path to write the outputs into, inside a hidden sibling of ``out_dir``; it is renamed to
    ``out_dir`` when the block ends without an exception, and the hidden sibling is always removed.

    The yielded folder does not exist yet (the caller creates it, e.g. with an atomic writer of its own).

    Raises:
        InputError: ``out_dir`` exists (before, or at the end because someone else wrote it meanwhile).
    """
    out = check_output_free(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL_MARK}", dir=out.parent))
    try:
        bundle = staging / out.name
        yield bundle
        check_output_free(out)
        bundle.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_analysis_outputs(out_dir: str | Path, volume: CTVolume, result: LabelUpResult, settings: LabelUpSettings,
                           *, segmentation: np.ndarray, segmentation_source: str, record_extra: dict[str, Any],
                           progress: Progress, start: float = 0.85) -> tuple[Path, float]:
    """Write every output file of one analysis atomically into ``out_dir`` (must not exist).

    Args:
        out_dir: the final folder.
        volume: the input CT (its geometry is the grid of every image written).
        result: the label-up chain's result (heatmap, pseudo-mask, territory on the input grid).
        settings: the chain's settings (recorded).
        segmentation: ``(Z, Y, X)`` 0/1 mask of the segmenter, or the pseudo-mask's copy.
        segmentation_source: ``"segmenter"`` or why it is a copy.
        record_extra: fields added to (or replacing those of) ``result.json``.
        progress: receives ``write`` events between ``start`` and 0.99.

    Returns:
        ``(out_dir, seconds spent writing)``; ``result.json``'s ``timings_s.write`` holds the same.
    """
    t0 = time.perf_counter()
    g = volume.geometry
    step = (0.99 - start) / 4
    with staged_output(out_dir) as bundle:
        progress("write", start, "writing heatmap, pseudo-mask, arteries and result.json")
        write_labelup_outputs(bundle, result, volume, settings, extra=record_extra)
        bundle.chmod(0o755)  # its writer's temporary folder is owner-only; results are meant to be shared
        progress("write", start + step, "writing segmentation.nii.gz")
        write_volume(np.asarray(segmentation, dtype=np.uint8), bundle / OUTPUT_FILES["segmentation"], g)
        progress("write", start + 2 * step, "writing segmentation.seg.nrrd")
        territory = record_extra.get("territory") or {}
        segments = analysis_segments(result.pseudomask, segmentation, result.territory,
                                     segmentation_source=segmentation_source,
                                     territory_source=f"given mask {territory['file']}"
                                     if territory.get("source") == "file" else "artery model")
        write_seg_nrrd(segments, g, bundle / OUTPUT_FILES["seg_nrrd"])
        dicom_seg, dicom_seg_error = None, None
        if volume.meta.get("format") == "DICOM" and volume.meta.get("files"):
            progress("write", start + 3 * step, "writing segmentation.dcm (DICOM SEG)")
            try:
                dicom_seg = write_dicom_seg(bundle / DICOM_SEG_FILE, volume.meta["files"], segments,
                                            software_version=__version__)
            except Exception as exc:  # an extra for PACS: its failure must not cost the analysis
                dicom_seg_error = " ".join(f"{type(exc).__name__}: {exc}".split())
                (bundle / DICOM_SEG_FILE).unlink(missing_ok=True)
                log.warning("%s: no DICOM SEG written: %s", volume.source, dicom_seg_error)
        progress("write", start + 3 * step, "finishing result.json")
        record_path = bundle / RESULT_FILE
        record = json.loads(record_path.read_text())
        if dicom_seg is not None:
            record.setdefault("files", {})["dicom_seg"] = DICOM_SEG_FILE
        if dicom_seg_error is not None:
            record["dicom_seg_error"] = dicom_seg_error
        seconds = time.perf_counter() - t0
        timings = record["timings_s"]
        timings["write"] = round(seconds, 3)
        timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 3)
        record_path.write_text(json.dumps(record, indent=1) + "\n")
    return Path(out_dir), seconds
