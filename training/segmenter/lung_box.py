"""A territory that is no prior: the box around a phantom's lungs, for a segmenter that may mark anything there.

The segmenter sees the CT only in its territory (grown by ``territory_dilation_mm``) and learns from the
territory as an input channel. Training and evaluating it with the box around both lungs, grown by a margin, as
its "territory" takes the artery prior away: the box holds the mediastinum, the heart and the chest wall as well
as every vessel, and its channel is constant. With ``--labels gt`` that is the fully supervised segmenter without
the artery prior, the upper bound that says whether the thin-branch emboli can be found from the image alone::

    python -m training.segmenter.lung_box --cohort cohort-train --out lungbox-train --grow-mm 5
    python -m training.segmenter.train --cohort cohort-train --labels gt --territory pred:lungbox-train ...
    python -m training.segmenter.evaluate --model ... --cohort cohort-test --territory pred:lungbox-test

writes ``OUT/<case_id>/arteries.nii.gz`` (uint8 0/1 on the case's CT grid) for every case of the cohort with a
``lungs.nii.gz`` (phantoms; a case without one is skipped with a warning). Cases already written are kept.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from PELabelUpLib.errors import InputError
from PELabelUpLib.evaluate.predictions import read_cohort
from PELabelUpLib.io import read_label_file, write_volume
from PELabelUpLib.preprocessing.crop import mask_box

from .sources import TERRITORY_FILE

log = logging.getLogger("training.segmenter.lung_box")

LUNGS_FILE = "lungs.nii.gz"


def lung_box(lungs: np.ndarray, spacing_mm: Sequence[float], grow_mm: float) -> np.ndarray:
    """``uint8 (Z, Y, X)``: 1 in the bounding box of ``lungs`` (nonzero) grown by ``grow_mm`` on every side
    (clipped to the array), else 0; ``spacing_mm`` in index order ``(x, y, z)``.

    Raises:
        ValueError: the lungs are empty, or ``grow_mm`` is negative.
    """
    if grow_mm < 0:
        raise ValueError(f"grow_mm must be >= 0, got {grow_mm}")
    margins = [int(math.ceil(grow_mm / float(s) - 1e-9)) for s in tuple(spacing_mm)[::-1]]
    box = mask_box(np.asarray(lungs) != 0, margin_voxels=margins)
    if box is None:
        raise ValueError("the lung mask is empty")
    out = np.zeros(np.shape(lungs), dtype=np.uint8)
    out[box.slices] = 1
    return out


def _write_box(lungs_path: Path, target: Path, grow_mm: float) -> Path:
    lungs, geometry = read_label_file(lungs_path)
    try:
        box = lung_box(lungs, geometry.spacing_mm, grow_mm)
    except ValueError as exc:
        raise InputError(lungs_path, str(exc)) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{TERRITORY_FILE}.tmp.nii.gz")
    write_volume(box, tmp, geometry)
    tmp.replace(target)
    return target


def write_lung_boxes(cohort: str | Path, out: str | Path, grow_mm: float = 5.0, *, workers: int = 1) -> list[Path]:
    """Write the lung box of every cohort case with a ``lungs.nii.gz`` as ``out/<case_id>/arteries.nii.gz``
    (kept when it exists; ``workers`` processes write the others); returns the files in ``cohort.csv`` order.

    Raises:
        InputError: no case of the cohort has a lung mask, or one is empty.
    """
    targets, todo = [], []
    for row in read_cohort(cohort):
        target = Path(out) / row.case_id / TERRITORY_FILE
        lungs_path = row.truth_dir / LUNGS_FILE
        if not target.is_file():
            if not lungs_path.is_file():
                log.warning("%s: skipped (no %s)", row.case_id, LUNGS_FILE)
                continue
            todo.append((lungs_path, target))
        targets.append(target)
    if not targets:
        raise InputError(cohort, f"no case with a {LUNGS_FILE}")
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
            for future in [pool.submit(_write_box, lungs, target, grow_mm) for lungs, target in todo]:
                future.result()
    else:
        for lungs, target in todo:
            _write_box(lungs, target, grow_mm)
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.segmenter.lung_box", description=__doc__.split("\n")[0])
    p.add_argument("--cohort", type=Path, required=True, help="cohort folder (cohort.csv) of phantoms")
    p.add_argument("--out", type=Path, required=True, help="folder of per-case folders to write")
    p.add_argument("--grow-mm", type=float, default=5.0, help="margin around the lungs' bounding box, mm")
    p.add_argument("--workers", type=int, default=1, help="processes that write the boxes")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        files = write_lung_boxes(args.cohort, args.out, args.grow_mm, workers=args.workers)
    except (InputError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    log.info("%d lung boxes in %s", len(files), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
