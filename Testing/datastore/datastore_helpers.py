"""Builders shared by the datastore tests and their worker processes: small CT-like volumes on an oblique,
anisotropic grid, and masks whose content encodes who wrote them."""

from __future__ import annotations

import numpy as np

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.volume import CTVolume


def oblique_geometry(size: tuple[int, int, int] = (24, 20, 12)) -> Geometry:
    """An oblique grid (rotated 20 degrees about z, then 10 about x), anisotropic spacing (mm), odd origin (LPS)."""
    a, b = np.deg2rad(20.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    direction = tuple(float(v) for v in (rz @ rx).ravel())
    return Geometry(size=size, spacing_mm=(0.68, 0.81, 2.5), origin_mm=(-171.3, 25.7, -412.15), direction=direction)


def ct_volume(seed: int = 0, geometry: Geometry | None = None) -> CTVolume:
    """A CT-like volume (int16 HU: air, soft tissue, contrast-filled vessels) on ``geometry``."""
    g = geometry or oblique_geometry()
    rng = np.random.default_rng(seed)
    hu = rng.normal(40.0, 25.0, size=g.shape_zyx)
    hu[:, :, :3] = -1000.0  # air at one side
    hu[rng.random(g.shape_zyx) < 0.05] = 350.0  # contrast
    return CTVolume(hu=np.round(hu).astype(np.int16), geometry=g, source=f"test volume {seed}")


def signed_mask(shape_zyx: tuple[int, int, int], writer: int, export: int) -> np.ndarray:
    """A uint8 label map that says who wrote it: label ``1 + writer`` on ``export + 1`` voxels of row 0, plus
    a block of label 1 (an embolus) elsewhere."""
    mask = np.zeros(shape_zyx, dtype=np.uint8)
    mask[1, 0, : export + 1] = 1 + writer
    mask[3:6, 5:9, 8:13] = 1
    return mask
