"""A tiny emboli cohort on disk: a contrast-filled tube (the artery) in lung, with a dark clot filling half of it.

Written in the NIfTI cohort layout (``cohort.csv``, ``<case>/ct.nii.gz``, ``arteries.nii.gz``, ``emboli.nii.gz``,
``case.json``) on an anisotropic grid, so the segmenter trainer reads it as it reads ``pelabelup synth`` output.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_volume
from PELabelUpLib.volume import CTVolume

SPACING_MM = (0.8, 0.8, 2.0)
SHAPE_ZYX = (20, 48, 48)
TUBE_RADIUS_MM = 5.0


def clot_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Geometry]:
    """``(hu int16, arteries uint8, emboli uint8, geometry)``: a tube along z, a clot in its +x half over 7 slices."""
    rng = np.random.default_rng(seed)
    z, y, x = SHAPE_ZYX
    geometry = Geometry(size=(x, y, z), spacing_mm=SPACING_MM, origin_mm=(-20.0, 5.0, 100.0))
    cy, cx = rng.uniform(20, 28, size=2)
    yy, xx = np.mgrid[:y, :x].astype(float)
    dy_mm, dx_mm = (yy - cy) * SPACING_MM[1], (xx - cx) * SPACING_MM[0]
    tube = dy_mm**2 + dx_mm**2 <= TUBE_RADIUS_MM**2
    arteries = np.broadcast_to(tube, SHAPE_ZYX).astype(np.uint8)
    emboli = np.zeros(SHAPE_ZYX, np.uint8)
    start = int(rng.integers(5, 9))
    emboli[start:start + 7] = tube & (dx_mm > -1.0)
    hu = rng.normal(-800.0, 15.0, SHAPE_ZYX)
    hu[arteries > 0] = rng.normal(350.0, 15.0, int(arteries.sum()))
    hu[emboli > 0] = rng.normal(45.0, 15.0, int(emboli.sum()))
    return hu.astype(np.int16), arteries, emboli, geometry


def write_clot_cohort(root: Path, n_cases: int, seed: int = 0) -> Path:
    """``n_cases`` clot cases (ids ``clot-000``...) under ``root``, with ``cohort.csv``."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_cases):
        hu, arteries, emboli, geometry = clot_case(seed * 1000 + i)
        case_id = f"clot-{i:03d}"
        folder = root / case_id
        write_volume(CTVolume(hu=hu, geometry=geometry), folder / "ct.nii.gz")
        write_volume(arteries, folder / "arteries.nii.gz", geometry)
        write_volume(emboli, folder / "emboli.nii.gz", geometry)
        labels = emboli.any(axis=(1, 2))
        (folder / "case.json").write_text(json.dumps({"case_id": case_id, "positive": True,
                                                      "slice_labels": labels.astype(int).tolist()}))
        rows.append({"case_id": case_id, "path": case_id})
    with (root / "cohort.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "path"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def write_case_masks(folder: Path, cohort: Path, case_id: str, masks: dict[str, np.ndarray]) -> None:
    """Write ``masks`` (file name -> ``(Z, Y, X)`` array) into ``folder/<case_id>/`` on the case's grid."""
    from PELabelUpLib.io import read_label_file

    _, geometry = read_label_file(cohort / case_id / "emboli.nii.gz")
    for name, mask in masks.items():
        write_volume(mask.astype(np.uint8), folder / case_id / name, geometry)
