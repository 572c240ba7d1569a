"""Tubes: centreline polylines with radii (LPS mm), curved paths, and their rasterisation on a grid.

A tube is a chain of tapered capsules (segment ``a -> b`` with radius going linearly from ``r_a`` to
``r_b``). Rasterisation works piece by piece: the polyline is cut into short pieces, each piece is evaluated
only inside the voxel box that covers it, and the caller receives, per piece, the box and the signed distance
(mm, negative inside) from each voxel centre to the piece's surface. Painting with a one-voxel ramp on that
distance gives partial-volume edges, so sub-voxel vessels stay continuous.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..geometry import Geometry
from .voxels import Box, index_box, voxel_size_mm, world_coords


@dataclass(frozen=True)
class Tube:
    """A tube around a centreline.

    Attributes:
        points_mm: ``(N, 3)`` LPS centreline points, mm, N >= 2.
        radii_mm: ``(N,)`` radius at each point, mm (> 0).
    """

    points_mm: np.ndarray
    radii_mm: np.ndarray

    def __post_init__(self) -> None:
        pts = np.asarray(self.points_mm, dtype=float)
        rad = np.asarray(self.radii_mm, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2:
            raise ValueError(f"points_mm must be (N>=2, 3), got shape {pts.shape}")
        if rad.shape != (len(pts),) or np.any(rad <= 0):
            raise ValueError(f"radii_mm must be {len(pts)} positive values, got {rad!r}")
        object.__setattr__(self, "points_mm", pts)
        object.__setattr__(self, "radii_mm", rad)

    @property
    def length_mm(self) -> float:
        return float(self._arc()[1][-1])

    def _arc(self) -> tuple[np.ndarray, np.ndarray]:
        """Segment lengths and cumulative arc length (cached)."""
        cached = self.__dict__.get("_arc_cache")
        if cached is None:
            seg = np.sqrt((np.diff(self.points_mm, axis=0) ** 2).sum(axis=1))
            cached = (seg, np.concatenate([[0.0], np.cumsum(seg)]))
            object.__setattr__(self, "_arc_cache", cached)
        return cached

    def point_at(self, fraction: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Point, unit tangent and radius at ``fraction`` (0..1) of the arc length."""
        seg, cum = self._arc()
        s = float(np.clip(fraction, 0.0, 1.0)) * cum[-1]
        i = int(np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1))
        t = (s - cum[i]) / seg[i] if seg[i] > 0 else 0.0
        p = self.points_mm[i] + t * (self.points_mm[i + 1] - self.points_mm[i])
        tangent = self.points_mm[i + 1] - self.points_mm[i]
        tangent = tangent / max(float(np.linalg.norm(tangent)), 1e-9)
        r = float(self.radii_mm[i] + t * (self.radii_mm[i + 1] - self.radii_mm[i]))
        return p, tangent, r


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1 (LPS direction)."""
    v = np.asarray(v, dtype=float)
    return v / max(math.sqrt(float(v @ v)), 1e-12)


def curved_path(start: np.ndarray, start_dir: np.ndarray, end: np.ndarray, rng: np.random.Generator,
                bend: float = 0.3, step_mm: float = 2.0) -> np.ndarray:
    """Smooth centreline ``(N, 3)`` (LPS mm) from ``start`` to ``end`` leaving along ``start_dir``.

    A cubic Bezier curve whose arrival direction is the chord direction turned by a random amount
    (``bend``, 0 = straight arrival), so consecutive branches curve smoothly and differently.
    """
    start = np.asarray(start, dtype=float)
    end = np.asarray(end, dtype=float)
    chord = end - start
    length = math.sqrt(float(chord @ chord))
    if length < 1e-6:
        return np.stack([start, start + unit(start_dir) * 1e-3])
    arrive = unit(unit(chord) + bend * rng.normal(size=3))
    c1 = start + unit(start_dir) * length / 3.0
    c2 = end - arrive * length / 3.0
    n = max(3, int(np.ceil(length / step_mm)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3) * start + 3 * ((1 - t) ** 2) * t * c1 + 3 * (1 - t) * (t**2) * c2 + (t**3) * end


def spline_tube(points_mm: np.ndarray, radii_mm: np.ndarray, step_mm: float | None = None) -> Tube:
    """Tube through control points ``(M, 3)`` (LPS mm) along a Catmull-Rom spline; radii interpolated.

    ``step_mm`` (default: a third of the smallest radius, 1.5-4 mm) spaces the centreline points.
    """
    if step_mm is None:
        step_mm = float(np.clip(np.min(radii_mm) / 3.0, 1.5, 4.0))
    ctrl = np.asarray(points_mm, dtype=float)
    rad = np.asarray(radii_mm, dtype=float)
    padded = np.concatenate([2 * ctrl[:1] - ctrl[1:2], ctrl, 2 * ctrl[-1:] - ctrl[-2:-1]])
    out_p, out_r = [ctrl[:1]], [rad[:1]]
    for i in range(len(ctrl) - 1):
        p0, p1, p2, p3 = padded[i:i + 4]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = np.linspace(0.0, 1.0, n + 1)[1:, None]
        seg = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                     + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        out_p.append(seg)
        out_r.append(rad[i] + (rad[i + 1] - rad[i]) * t[:, 0])
    return Tube(np.concatenate(out_p), np.concatenate(out_r))


def segment_distance(x: np.ndarray, y: np.ndarray, z: np.ndarray, a: np.ndarray, b: np.ndarray,
                     ra: float, rb: float) -> np.ndarray:
    """Signed distance (mm, negative inside) from LPS points ``(x, y, z)`` to a tapered capsule ``a -> b``.

    ``x, y, z`` broadcast together (any shape); ``a, b`` are LPS mm; ``ra, rb`` radii (mm) at ``a`` and ``b``.
    """
    ab = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    len2 = float(ab @ ab)
    px, py, pz = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
    if len2 < 1e-12:
        return np.sqrt(px * px + py * py + pz * pz) - np.float32(ra)
    t = px * np.float32(ab[0] / len2) + py * np.float32(ab[1] / len2) + pz * np.float32(ab[2] / len2)
    np.clip(t, 0.0, 1.0, out=t)
    dx = px - t * np.float32(ab[0])
    dy = py - t * np.float32(ab[1])
    dz = pz - t * np.float32(ab[2])
    d = np.sqrt(dx * dx + dy * dy + dz * dz)
    d -= np.float32(ra) + t * np.float32(rb - ra)
    return d


def _pieces(tube: Tube) -> Iterator[tuple[int, int]]:
    """Index ranges ``[i0, i1]`` of consecutive centreline points, each piece a few radii long."""
    pts, rad = tube.points_mm, tube.radii_mm
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    i0, acc = 0, 0.0
    for i, s in enumerate(seg):
        acc += s
        limit = max(6.0, 1.5 * float(rad[i0]))
        if acc >= limit or i == len(seg) - 1:
            yield i0, i + 1
            i0, acc = i + 1, 0.0


_MAX_WORK = 4_000_000  # elements of the (segments, voxels) work arrays


def polyline_distance(x: np.ndarray, y: np.ndarray, z: np.ndarray, points_mm: np.ndarray,
                      radii_mm: np.ndarray) -> np.ndarray:
    """Signed distance (mm, float32, negative inside) from LPS points to a chain of tapered capsules.

    ``x, y, z`` broadcast to one shape; ``points_mm`` ``(M+1, 3)`` and ``radii_mm`` ``(M+1,)`` give the
    chain. All segments are evaluated at once (arrays of shape ``(M, N)``), so use it on small boxes.
    """
    shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
    pts = np.asarray(points_mm, dtype=np.float32)
    rad = np.asarray(radii_mm, dtype=np.float32)
    n_vox = int(np.prod(shape))
    chunk = max(1, _MAX_WORK // max(n_vox, 1))
    if len(pts) - 1 > chunk:  # bound the (M, N) work arrays
        out = None
        for i in range(0, len(pts) - 1, chunk):
            d = polyline_distance(x, y, z, pts[i:i + chunk + 1], rad[i:i + chunk + 1])
            out = d if out is None else np.minimum(out, d, out=out)
        return out
    a, ab = pts[:-1], np.diff(pts, axis=0)
    inv_len2 = 1.0 / np.maximum((ab * ab).sum(axis=1), np.float32(1e-12))
    px = np.broadcast_to(x, shape).reshape(1, -1) - a[:, 0:1]
    py = np.broadcast_to(y, shape).reshape(1, -1) - a[:, 1:2]
    pz = np.broadcast_to(z, shape).reshape(1, -1) - a[:, 2:3]
    t = (px * ab[:, 0:1] + py * ab[:, 1:2] + pz * ab[:, 2:3]) * inv_len2[:, None]
    np.clip(t, 0.0, 1.0, out=t)
    px -= t * ab[:, 0:1]
    py -= t * ab[:, 1:2]
    pz -= t * ab[:, 2:3]
    d = np.sqrt(px * px + py * py + pz * pz)
    d -= rad[:-1, None] + t * (rad[1:] - rad[:-1])[:, None]
    return d.min(axis=0).reshape(shape)


def tube_distance(tube: Tube, geometry: Geometry, margin_mm: float = 0.0) -> Iterator[tuple[Box, np.ndarray]]:
    """Per piece of ``tube``: its voxel box and the signed distance (float32, mm) to the tube surface.

    The box covers the piece grown by ``margin_mm`` plus one voxel; distances are valid for
    thresholds up to ``margin_mm``. Pieces outside the grid are skipped.
    """
    pts, rad = tube.points_mm, tube.radii_mm
    for i0, i1 in _pieces(tube):
        grow = float(rad[i0:i1 + 1].max()) + margin_mm
        box = index_box(geometry, pts[i0:i1 + 1].min(axis=0) - grow, pts[i0:i1 + 1].max(axis=0) + grow)
        if box is None:
            continue
        yield box, polyline_distance(*world_coords(geometry, box), pts[i0:i1 + 1], rad[i0:i1 + 1])


def paint_tube(hu: np.ndarray, tube: Tube, geometry: Geometry, value_hu: float,
               mask: np.ndarray | None = None, mask_value: int = 1) -> None:
    """Paint ``value_hu`` into ``hu`` (float32 ``(Z, Y, X)``) inside ``tube`` with a one-voxel ramp.

    Voxels whose centre lies inside the tube (signed distance < 0) are set to ``mask_value`` in ``mask``.
    """
    ramp = np.float32(voxel_size_mm(geometry))
    for box, dist in tube_distance(tube, geometry):
        cover = np.clip(np.float32(0.5) - dist / ramp, 0.0, 1.0)
        region = hu[box]
        region += cover * (np.float32(value_hu) - region)
        if mask is not None:
            mask[box][dist < 0] = mask_value


def mark_tube(mask: np.ndarray, tube: Tube, geometry: Geometry, margin_mm: float = 0.0,
              value: int | bool = True) -> None:
    """Set ``mask`` to ``value`` where voxel centres lie within ``margin_mm`` of ``tube``."""
    for box, dist in tube_distance(tube, geometry, margin_mm=margin_mm):
        mask[box][dist < margin_mm] = value
