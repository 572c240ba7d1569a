"""Smooth random texture: unit-variance noise drawn on a coarse grid and upsampled linearly.

The coarse field lives in the grid's index space with a physical node spacing (``feature_mm``) on every axis,
so the texture has the same size in mm whatever the voxel spacing. Upsampling is separable two-tap linear
interpolation written out with indexing (no BLAS, so the result does not depend on the number of threads):
the in-plane upsampled stack is kept once and each box blends two of its planes per slice.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from .voxels import Box


def _taps(n_fine: int, spacing_mm: float, feature_mm: float, n_coarse: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower coarse node and weight of the upper one (float32) for each of ``n_fine`` voxel centres."""
    pos = np.arange(n_fine) * spacing_mm / feature_mm + 1.0  # one node of margin before voxel 0
    i0 = np.clip(np.floor(pos).astype(int), 0, n_coarse - 2)
    return i0, (pos - i0).astype(np.float32)


def _upsample(coarse: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    i0, frac = taps
    shape = [1] * coarse.ndim
    shape[axis] = len(frac)
    frac = frac.reshape(shape)
    lower = np.take(coarse, i0, axis=axis)
    upper = np.take(coarse, i0 + 1, axis=axis)
    return lower + frac * (upper - lower)


class NoiseField:
    """A smooth, roughly unit-variance random field on a grid (float32, ``(Z, Y, X)`` boxes).

    Args:
        shape_zyx: the array shape ``(Z, Y, X)`` it covers.
        spacing_zyx_mm: voxel spacing along ``(Z, Y, X)``, mm (the field follows the index axes; texture is
            isotropic, so oblique grids are fine).
        feature_mm: spacing of the coarse nodes, mm (the texture's grain).
        rng: the random source (consumed once, at construction).
    """

    def __init__(self, shape_zyx: tuple[int, int, int], spacing_zyx_mm: tuple[float, float, float],
                 feature_mm: float, rng: np.random.Generator) -> None:
        if feature_mm <= 0:
            raise ValueError(f"feature_mm must be positive, got {feature_mm}")
        sz, sy, sx = (float(s) for s in spacing_zyx_mm)
        nz, ny, nx = (int(n) for n in shape_zyx)
        n_c = [int(np.ceil(n * s / feature_mm)) + 3 for n, s in ((nz, sz), (ny, sy), (nx, sx))]
        coarse = ndimage.gaussian_filter(rng.standard_normal(n_c), 0.8, mode="wrap")
        coarse = (coarse / max(float(coarse.std()), 1e-9)).astype(np.float32)
        self._z_taps = _taps(nz, sz, feature_mm, n_c[0])
        plane = _upsample(coarse, 1, _taps(ny, sy, feature_mm, n_c[1]))
        self._plane = _upsample(plane, 2, _taps(nx, sx, feature_mm, n_c[2]))  # (cz, Y, X)

    def sample(self, box: Box) -> np.ndarray:
        """The field on ``box`` (``(Z, Y, X)`` slices of the covered array): float32, the box's shape."""
        zs, ys, xs = box
        i0, frac = (t[zs] for t in self._z_taps)
        lower = self._plane[i0][:, ys, xs]
        upper = self._plane[i0 + 1][:, ys, xs]
        return lower + frac[:, None, None] * (upper - lower)

    @classmethod
    def on_grid(cls, geometry: Geometry, feature_mm: float, rng: np.random.Generator) -> NoiseField:
        """A field covering the whole grid of ``geometry``."""
        sx, sy, sz = geometry.spacing_mm
        return cls(geometry.shape_zyx, (sz, sy, sx), feature_mm, rng)
