"""Image geometry in ITK/DICOM conventions (LPS world, millimetres).

Index order is ``(i, j, k) = (x, y, z)``; numpy arrays from SimpleITK are ``(Z, Y, X)``. The direction
matrix is 3x3, row-major as SimpleITK stores it; its *columns* are the world (LPS) directions of the
i, j, k axes. ``world = origin + direction @ (spacing * index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

Vec3 = tuple[float, float, float]

# Tolerance for "the same grid" in :func:`grid_differences` (mm, and unit-less for the direction): an image read
# back from NIfTI carries float32 geometry (about 6e-5 mm at 1 m from the origin), which must still count as the same.
GRID_TOLERANCE_MM = 1e-3
GRID_TOLERANCE_DIRECTION = 1e-5


@dataclass(frozen=True)
class Geometry:
    """Grid of a 3-D image.

    Attributes:
        size: voxels along (x, y, z) = (i, j, k).
        spacing_mm: voxel size along (i, j, k) in mm.
        origin_mm: LPS position (mm) of the centre of voxel (0, 0, 0).
        direction: 9 floats, row-major 3x3; column c is the LPS unit vector of index axis c.
    """

    size: tuple[int, int, int]
    spacing_mm: Vec3
    origin_mm: Vec3
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.size) != 3 or any(int(s) < 1 for s in self.size):
            raise ValueError(f"size must be three positive integers, got {self.size}")
        if len(self.spacing_mm) != 3 or any(not np.isfinite(s) or s <= 0 for s in self.spacing_mm):
            raise ValueError(f"spacing_mm must be three positive numbers, got {self.spacing_mm}")
        if len(self.direction) != 9:
            raise ValueError(f"direction must hold 9 values, got {len(self.direction)}")

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Numpy shape ``(Z, Y, X)`` of an array on this grid."""
        return (int(self.size[2]), int(self.size[1]), int(self.size[0]))

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def is_oblique(self) -> bool:
        m = np.abs(self.direction_matrix)
        return not np.allclose(np.sort(m, axis=0)[:2], 0.0, atol=1e-6)

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous index ``(..., 3)`` in (i, j, k) order -> LPS mm ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=float)
        return np.asarray(self.origin_mm) + (ijk * np.asarray(self.spacing_mm)) @ self.direction_matrix.T

    def world_to_index(self, xyz_lps: np.ndarray) -> np.ndarray:
        """LPS mm ``(..., 3)`` -> continuous index ``(..., 3)`` in (i, j, k) order."""
        rel = np.asarray(xyz_lps, dtype=float) - np.asarray(self.origin_mm)
        return (rel @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing_mm)

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Geometry:
        return cls(
            size=tuple(int(s) for s in image.GetSize()),
            spacing_mm=tuple(float(s) for s in image.GetSpacing()),
            origin_mm=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Stamp this geometry's spacing, origin and direction on ``image`` (sizes must agree)."""
        if tuple(image.GetSize()) != tuple(self.size):
            raise ValueError(f"image size {image.GetSize()} does not match geometry size {self.size}")
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(self.direction)
        return image

    def array_to_sitk(self, array_zyx: np.ndarray) -> sitk.Image:
        """Numpy ``(Z, Y, X)`` array -> SimpleITK image on this grid."""
        if tuple(array_zyx.shape) != self.shape_zyx:
            raise ValueError(f"array shape {array_zyx.shape} does not match grid (Z, Y, X) {self.shape_zyx}")
        return self.apply_to(sitk.GetImageFromArray(array_zyx))

    def same_grid(self, other: Geometry, tol: float = 1e-4) -> bool:
        return (
            tuple(self.size) == tuple(other.size)
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )


def grid_differences(geometry: Geometry, reference: Geometry) -> list[str]:
    """What differs between two grids, as ``"<what> <this> vs <reference>"`` texts (empty: the same grid).

    Sizes and spacings are in index order ``(x, y, z)``, the origin in LPS mm. Spacing and origin may differ by
    :data:`GRID_TOLERANCE_MM`, each direction cosine by :data:`GRID_TOLERANCE_DIRECTION`.
    """

    def shown(values: tuple[float, ...]) -> str:
        return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"

    out = []
    if tuple(geometry.size) != tuple(reference.size):
        out.append(f"size (x, y, z) {tuple(geometry.size)} vs {tuple(reference.size)}")
    if not np.allclose(geometry.spacing_mm, reference.spacing_mm, rtol=0, atol=GRID_TOLERANCE_MM):
        out.append(f"spacing (x, y, z) {shown(geometry.spacing_mm)} vs {shown(reference.spacing_mm)} mm")
    if not np.allclose(geometry.origin_mm, reference.origin_mm, rtol=0, atol=GRID_TOLERANCE_MM):
        out.append(f"origin (LPS) {shown(geometry.origin_mm)} vs {shown(reference.origin_mm)} mm")
    if not np.allclose(geometry.direction, reference.direction, rtol=0, atol=GRID_TOLERANCE_DIRECTION):
        out.append(f"direction {shown(geometry.direction)} vs {shown(reference.direction)}")
    return out
