"""Builders for the MRML tests: oblique, anisotropic grids and analysis folders on disk.

An analysis folder follows the ``pelabelup analyze`` contract around a small CT written to disk on an oblique,
anisotropic grid: a body (soft tissue in air), a pulmonary-artery-like tube, two clots (one on each side of
the body's midline), a heatmap peaking on the clots, and the masks a run would write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_volume
from PELabelUpLib.pseudomask import describe_emboli
from PELabelUpLib.volume import CTVolume


def oblique_geometry(size: tuple[int, int, int] = (48, 30, 20), spacing_mm: tuple[float, float, float] = (0.9, 1.1, 2.5),
                     angles_deg: tuple[float, float, float] = (9.0, -6.0, 14.0)) -> Geometry:
    """An oblique, anisotropic grid (LPS), roughly axial: k points mostly to the head."""
    rotation = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    return Geometry(size=size, spacing_mm=spacing_mm, origin_mm=(-14.0, -20.0, -310.0),
                    direction=tuple(float(v) for v in rotation.ravel()))


@dataclass
class AnalysisFolder:
    """An analysis folder on disk and the arrays written into it (all ``(Z, Y, X)`` on ``ct.geometry``)."""

    folder: Path
    ct_path: Path
    ct: CTVolume
    heatmap: np.ndarray
    pseudomask: np.ndarray
    segmentation: np.ndarray | None
    arteries: np.ndarray
    record: dict


def _ball(shape: tuple[int, int, int], centre_zyx: tuple[float, float, float], radius_vox: tuple[float, ...]) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=float)
    d = sum(((a - c) / r) ** 2 for a, c, r in zip((zz, yy, xx), centre_zyx, radius_vox, strict=True))
    return d <= 1.0


def write_analysis_folder(root: Path, geometry: Geometry, *, with_segmentation: bool = True) -> AnalysisFolder:
    """Write a CT (``ct.nii.gz``) and an analysis folder (``analysis/``) under ``root``."""
    shape = geometry.shape_zyx
    nz, ny, nx = shape
    body = _ball(shape, (nz / 2, ny / 2, nx / 2), (nz * 3, ny * 0.45, nx * 0.45))
    zz, yy, xx = np.indices(shape)
    artery = (np.abs(yy - ny * 0.45) <= 2) & (xx >= nx * 0.08) & (xx <= nx * 0.92) & (zz >= 2) & (zz <= nz - 3)
    clot_right = artery & _ball(shape, (nz * 0.5, ny * 0.45, nx * 0.15), (3.0, 3.0, 3.0))  # LPS -x: patient right
    clot_left = artery & _ball(shape, (nz * 0.35, ny * 0.45, nx * 0.85), (2.0, 3.0, 4.0))
    hu = np.where(body, 40, -1000).astype(np.int16)
    hu[artery] = 350
    hu[clot_right | clot_left] = 45
    ct = CTVolume(hu=hu, geometry=geometry, source="phantom")
    ct_path = write_volume(ct, root / "ct.nii.gz")

    pseudomask = (clot_right | clot_left).astype(np.uint8)
    segmentation = clot_right.astype(np.uint8) if with_segmentation else None
    heat = ndimage.gaussian_filter(pseudomask.astype(np.float32), sigma=1.5)
    heatmap = (heat / heat.max()).astype(np.float32)
    folder = root / "analysis"
    write_volume(heatmap, folder / "heatmap.nii.gz", geometry)
    write_volume(pseudomask, folder / "pseudomask.nii.gz", geometry)
    write_volume(artery.astype(np.uint8), folder / "arteries.nii.gz", geometry)
    if segmentation is not None:
        write_volume(segmentation, folder / "segmentation.nii.gz", geometry)
    emboli = [dict(e, source="pseudomask") for e in describe_emboli(pseudomask.astype(bool), heatmap, geometry)]
    slice_probabilities = np.clip(pseudomask.any(axis=(1, 2)) * 0.7 + np.linspace(0.05, 0.2, nz), 0, 1)
    record = {
        "pe_probability": 0.83,
        "slice_probabilities": [round(float(p), 6) for p in slice_probabilities],
        "emboli": emboli,
        "models": [{"name": "test-classifier", "version": "0"}],
        "timings_s": {"total": 1.0},
        "input": str(ct_path),
    }
    (folder / "result.json").write_text(json.dumps(record, indent=1))
    return AnalysisFolder(folder=folder, ct_path=ct_path, ct=ct, heatmap=heatmap, pseudomask=pseudomask,
                          segmentation=segmentation, arteries=artery.astype(np.uint8), record=record)
