"""Oriented ellipsoids in patient space (LPS mm) and their rasterisation, for heart chambers and organs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import Geometry
from .voxels import Box, index_box, voxel_size_mm, world_coords


@dataclass(frozen=True)
class Ellipsoid:
    """An oriented ellipsoid.

    Attributes:
        center_mm: LPS centre, mm.
        axes: ``(3, 3)`` rows are the LPS unit vectors of its three axes (orthonormal).
        semi_mm: semi-axis lengths along those axes, mm.
    """

    center_mm: np.ndarray
    axes: np.ndarray
    semi_mm: np.ndarray

    def __post_init__(self) -> None:
        axes = np.asarray(self.axes, dtype=float).reshape(3, 3)
        semi = np.asarray(self.semi_mm, dtype=float).reshape(3)
        if not np.allclose(axes @ axes.T, np.eye(3), atol=1e-6):
            raise ValueError(f"axes must be orthonormal rows, got {axes.tolist()}")
        if np.any(semi <= 0):
            raise ValueError(f"semi_mm must be positive, got {semi.tolist()}")
        object.__setattr__(self, "center_mm", np.asarray(self.center_mm, dtype=float).reshape(3))
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "semi_mm", semi)

    def grown(self, grow_mm: float) -> Ellipsoid:
        """The same ellipsoid with every semi-axis longer by ``grow_mm`` (shorter when negative)."""
        return Ellipsoid(self.center_mm, self.axes, np.maximum(self.semi_mm + grow_mm, 0.1))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """LPS axis-aligned bounding box ``(lo, hi)``, mm."""
        half = np.sqrt(((self.axes * self.semi_mm[:, None]) ** 2).sum(axis=0))
        return self.center_mm - half, self.center_mm + half

    def radial(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Normalised radius (1 on the surface, < 1 inside) at LPS points; arrays broadcast together."""
        dx = x - np.float32(self.center_mm[0])
        dy = y - np.float32(self.center_mm[1])
        dz = z - np.float32(self.center_mm[2])
        total = None
        for axis, semi in zip(self.axes, self.semi_mm, strict=True):
            q = (dx * np.float32(axis[0] / semi) + dy * np.float32(axis[1] / semi) + dz * np.float32(axis[2] / semi))
            total = q * q if total is None else total + q * q
        assert total is not None
        return np.sqrt(total)


def ellipsoid_box(ellipsoid: Ellipsoid, geometry: Geometry) -> tuple[Box, np.ndarray] | None:
    """Voxel box covering ``ellipsoid`` and the signed distance (mm, approximate, negative inside) in it.

    The distance is ``(radial - 1) * smallest semi-axis``: exact on the surface, good enough for a
    one-voxel partial-volume ramp and for thresholds of a few mm.
    """
    lo, hi = ellipsoid.bounds()
    box = index_box(geometry, lo, hi)
    if box is None:
        return None
    x, y, z = world_coords(geometry, box)
    rad = ellipsoid.radial(x, y, z)
    shape = tuple(s.stop - s.start for s in box)
    return box, np.broadcast_to((rad - 1.0) * np.float32(ellipsoid.semi_mm.min()), shape)


def paint_ellipsoid(hu: np.ndarray, ellipsoid: Ellipsoid, geometry: Geometry, value_hu: float,
                    mask: np.ndarray | None = None, mask_value: int | bool = True) -> None:
    """Paint ``value_hu`` into ``hu`` (float32 ``(Z, Y, X)``) inside ``ellipsoid`` with a one-voxel ramp.

    Voxels whose centre is inside get ``mask_value`` in ``mask``.
    """
    found = ellipsoid_box(ellipsoid, geometry)
    if found is None:
        return
    box, dist = found
    cover = np.clip(np.float32(0.5) - dist / np.float32(voxel_size_mm(geometry)), 0.0, 1.0)
    region = hu[box]
    region += cover * (np.float32(value_hu) - region)
    if mask is not None:
        mask[box][dist < 0] = mask_value


def frame_from(primary: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Orthonormal rows ``(primary, second, third)``: ``second`` is ``hint`` made perpendicular to ``primary``."""
    a = np.asarray(primary, dtype=float)
    a = a / np.linalg.norm(a)
    b = np.asarray(hint, dtype=float) - a * float(np.dot(hint, a))
    b = b / np.linalg.norm(b)
    return np.stack([a, b, np.cross(a, b)])
