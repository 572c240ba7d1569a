"""World (LPS mm) coordinates of voxel boxes, and the voxel box that covers a world-space region.

Everything the phantom paints is defined in patient space (LPS mm) and sampled on the grid through these
helpers, so an oblique grid shows upright anatomy. A *box* is a tuple of three slices in numpy ``(Z, Y, X)``
order. On an axis-aligned grid (each index axis parallel to a world axis) the coordinates come back as
broadcastable 1-D arrays (shapes such as ``(1, 1, nx)``) and cost no memory; on an oblique grid they are full
``(nz, ny, nx)`` arrays, so callers work slab by slab (:func:`slabs`).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from itertools import product

import numpy as np

from ..geometry import Geometry

Box = tuple[slice, slice, slice]


def box_shape(box: Box) -> tuple[int, int, int]:
    """Numpy shape ``(nz, ny, nx)`` of a box."""
    return tuple(int(s.stop - s.start) for s in box)  # type: ignore[return-value]


def world_coords(geometry: Geometry, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS coordinates (mm, float32) ``(x, y, z)`` of the voxel centres in ``box``.

    Each returned array broadcasts to the box's ``(nz, ny, nx)`` shape; on axis-aligned grids they stay
    1-D along the one index axis they depend on.
    """
    spacing = np.asarray(geometry.spacing_mm, dtype=float)
    direction = geometry.direction_matrix
    # index axis c (0=i=x, 1=j=y, 2=k=z) lives on numpy axis 2 - c
    index_axes = []
    for c, sl in zip((2, 1, 0), box, strict=True):
        shape = [1, 1, 1]
        shape[2 - c] = sl.stop - sl.start
        index_axes.append((c, np.arange(sl.start, sl.stop, dtype=float).reshape(shape)))
    coords = []
    for w in range(3):
        total: np.ndarray | float = float(geometry.origin_mm[w])
        for c, idx in index_axes:
            weight = direction[w, c] * spacing[c]
            if abs(direction[w, c]) > 1e-12:
                total = total + weight * idx
        coords.append(np.asarray(total, dtype=np.float32).reshape((1, 1, 1)) if np.ndim(total) == 0
                      else np.asarray(total, dtype=np.float32))
    return coords[0], coords[1], coords[2]


@lru_cache(maxsize=16)
def grid_constants(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(world -> index matrix, origin, lower, upper)``: LPS mm; the bounds enclose the grid's voxel centres
    grown by one voxel. Read-only arrays, cached per geometry."""
    to_index = np.linalg.inv(geometry.direction_matrix * np.asarray(geometry.spacing_mm)[None, :])
    size = np.asarray(geometry.size, dtype=float)
    corners = np.array([np.where(np.array(bits) == 0, -1.0, size) for bits in product((0, 1), repeat=3)])
    world = geometry.index_to_world(corners)
    out = (to_index, np.asarray(geometry.origin_mm, dtype=float), world.min(axis=0), world.max(axis=0))
    for arr in out:
        arr.flags.writeable = False  # cached and shared
    return out


def index_box(geometry: Geometry, lo_mm: np.ndarray, hi_mm: np.ndarray, pad_vox: int = 1) -> Box | None:
    """Smallest voxel box covering the world axis-aligned box ``[lo_mm, hi_mm]`` (LPS mm), padded.

    Returns ``(Z, Y, X)`` slices clipped to the grid, or ``None`` when the region misses the grid.
    """
    to_index, origin, glo, ghi = grid_constants(geometry)
    lo = np.maximum(np.asarray(lo_mm, dtype=float), glo)
    hi = np.minimum(np.asarray(hi_mm, dtype=float), ghi)
    if np.any(hi < lo):
        return None
    centre = to_index @ ((lo + hi) / 2 - origin)
    half = np.abs(to_index) @ ((hi - lo) / 2)
    size = geometry.size
    start = np.floor(centre - half).astype(int) - pad_vox
    stop = np.ceil(centre + half).astype(int) + 1 + pad_vox
    x0, y0, z0 = (max(0, int(v)) for v in start)
    x1, y1, z1 = (min(int(n), int(v)) for n, v in zip(size, stop, strict=True))
    if x1 <= x0 or y1 <= y0 or z1 <= z0:
        return None
    return (slice(z0, z1), slice(y0, y1), slice(x0, x1))


def slabs(geometry: Geometry, max_voxels: int = 4_000_000) -> Iterator[Box]:
    """Boxes of whole axial slices (runs of the grid's third index) holding at most ``max_voxels`` each."""
    nz, ny, nx = geometry.shape_zyx
    step = max(1, max_voxels // (ny * nx))
    for z0 in range(0, nz, step):
        yield (slice(z0, min(nz, z0 + step)), slice(0, ny), slice(0, nx))


def voxel_size_mm(geometry: Geometry) -> float:
    """Geometric mean voxel edge (mm): the width of one voxel's partial-volume ramp when painting."""
    return float(np.prod(geometry.spacing_mm) ** (1.0 / 3.0))
