"""A trivially separable cohort on disk: a bright tube per study; positives hold a dark clot on some slices.

Written in the NIfTI cohort layout (``cohort.csv``, ``<case>/ct.nii.gz``, ``arteries.nii.gz``, ``case.json``)
so the real trainers read it exactly as they read ``pelabelup synth`` output.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_volume
from PELabelUpLib.volume import CTVolume


def write_toy_cohort(root: Path, n_cases: int, seed: int, *, shape_zyx=(24, 64, 64), prefix: str = "toy") -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    z, y, x = shape_zyx
    geometry = Geometry(size=(x, y, z), spacing_mm=(1.0, 1.0, 2.0), origin_mm=(0.0, 0.0, 0.0))
    for i in range(n_cases):
        positive = i % 2 == 1
        hu = rng.normal(-800, 10, shape_zyx).astype(np.int16)
        cy, cx = rng.integers(24, 40, size=2)
        yy, xx = np.mgrid[:y, :x]
        tube = (yy - cy) ** 2 + (xx - cx) ** 2 <= 5 ** 2
        arteries = np.zeros(shape_zyx, np.uint8)
        arteries[:, tube] = 1
        hu[:, tube] = rng.normal(350, 10, (z, int(tube.sum())))
        labels = np.zeros(z, bool)
        if positive:
            start = int(rng.integers(3, z - 9))
            labels[start:start + 5] = True
            hu[start:start + 5][:, tube] = rng.normal(50, 10, (5, int(tube.sum())))
        case_id = f"{prefix}-{i:03d}"
        folder = root / case_id
        write_volume(CTVolume(hu=hu, geometry=geometry), folder / "ct.nii.gz")
        write_volume(arteries, folder / "arteries.nii.gz", geometry)
        (folder / "case.json").write_text(json.dumps({"case_id": case_id, "positive": positive,
                                                      "slice_labels": labels.astype(int).tolist()}))
        rows.append({"case_id": case_id, "path": case_id})
    with (root / "cohort.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "path"])
        writer.writeheader()
        writer.writerows(rows)
    return root
