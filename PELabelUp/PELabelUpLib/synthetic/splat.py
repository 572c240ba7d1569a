"""Rasterise many thin tube segments at once: the small lung vessels (thousands of segments).

Per-piece boxes (:mod:`.tubes`) cost a few numpy calls per piece, too many for thousands of small vessels.
Here all segments of a radius class are processed together: each short segment gets the same small voxel
box (a fixed offset grid around its lower corner), distances are computed in one vectorised pass, and the
partial-volume coverage (0..255, one-voxel ramp) is max-accumulated into a ``uint8`` volume.

Distances are measured in *index-scaled* coordinates ``(index * spacing)``: the direction matrix is
orthonormal, so these equal LPS distances, on oblique grids too.
"""

from __future__ import annotations

import numpy as np

from ..geometry import Geometry
from .voxels import grid_constants, voxel_size_mm

RADIUS_CLASSES_MM = (0.7, 1.1, 1.8)
_MAX_WORK = 2_000_000


def subdivide(segments: np.ndarray, max_len_mm: float) -> np.ndarray:
    """Split segments ``(K, 8)`` rows ``[a(3), b(3), r_a, r_b]`` (LPS mm) into pieces no longer than ``max_len_mm``."""
    if len(segments) == 0:
        return segments.reshape(0, 8)
    a, b = segments[:, 0:3], segments[:, 3:6]
    n = np.maximum(1, np.ceil(np.linalg.norm(b - a, axis=1) / max_len_mm)).astype(int)
    rep = np.repeat(np.arange(len(segments)), n)
    j = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
    t0 = (j / n[rep])[:, None]
    t1 = ((j + 1) / n[rep])[:, None]
    s = segments[rep]
    return np.concatenate([s[:, 0:3] + t0 * (s[:, 3:6] - s[:, 0:3]), s[:, 0:3] + t1 * (s[:, 3:6] - s[:, 0:3]),
                           s[:, 6:7] + t0 * (s[:, 7:8] - s[:, 6:7]), s[:, 6:7] + t1 * (s[:, 7:8] - s[:, 6:7])],
                          axis=1)


def _to_index(points: np.ndarray, to_index: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """LPS ``(K, 3)`` -> continuous index, written out (no BLAS: identical whatever the thread count)."""
    rel = points - origin
    return rel[:, 0:1] * to_index[:, 0] + rel[:, 1:2] * to_index[:, 1] + rel[:, 2:3] * to_index[:, 2]


def splat_coverage(segments: np.ndarray, geometry: Geometry, coverage: np.ndarray) -> None:
    """Max-accumulate the coverage (0..255) of tapered capsules into ``coverage`` (uint8 ``(Z, Y, X)``).

    Args:
        segments: ``(K, 8)`` rows ``[a_x, a_y, a_z, b_x, b_y, b_z, r_a, r_b]``, LPS mm.
        geometry: the grid.
        coverage: written in place; 255 = voxel centre well inside a tube, 128 = on its surface.
    """
    if coverage.shape != geometry.shape_zyx or coverage.dtype != np.uint8:
        raise ValueError(f"coverage must be uint8 {geometry.shape_zyx}, got {coverage.dtype} {coverage.shape}")
    spacing = np.asarray(geometry.spacing_mm, dtype=float)
    ramp = voxel_size_mm(geometry)
    to_index, origin, glo, ghi = grid_constants(geometry)
    segs = np.asarray(segments, dtype=float).reshape(-1, 8)
    reach = np.maximum(segs[:, 6], segs[:, 7])[:, None] + ramp
    seg_lo = np.minimum(segs[:, 0:3], segs[:, 3:6]) - reach
    seg_hi = np.maximum(segs[:, 0:3], segs[:, 3:6]) + reach
    segs = segs[np.all((seg_hi >= glo) & (seg_lo <= ghi), axis=1)]  # only segments near the grid
    segs = subdivide(segs, 1.5 * float(spacing.min()))
    size = np.asarray(geometry.size)
    flat_out = coverage.reshape(-1)
    r_max_seg = np.maximum(segs[:, 6], segs[:, 7])
    lower = 0.0
    for upper in (*RADIUS_CLASSES_MM, np.inf):
        pick = (r_max_seg > lower) & (r_max_seg <= upper)
        lower = upper
        if not pick.any():
            continue
        s = segs[pick]
        ia = _to_index(s[:, 0:3], to_index, origin)  # continuous (i, j, k)
        ib = _to_index(s[:, 3:6], to_index, origin)
        ext = (float(r_max_seg[pick].max()) + ramp) / spacing
        lo = np.floor(np.minimum(ia, ib) - ext).astype(np.int64)
        keep = np.all((lo < size) & (np.ceil(np.maximum(ia, ib) + ext) >= 0), axis=1)
        s, ia, ib, lo = s[keep], ia[keep], ib[keep], lo[keep]
        if len(s) == 0:
            continue
        box = (np.ceil(np.abs(ia - ib).max(axis=0) + 2 * ext).astype(int) + 2)
        off = np.stack(np.meshgrid(*(np.arange(n) for n in box), indexing="ij"), axis=-1).reshape(-1, 3)
        step = max(1, _MAX_WORK // len(off))
        for c in range(0, len(s), step):
            _splat_chunk(s[c:c + step], ia[c:c + step], ib[c:c + step], lo[c:c + step], off, spacing, ramp, size,
                         flat_out)


def _splat_chunk(s: np.ndarray, ia: np.ndarray, ib: np.ndarray, lo: np.ndarray, off: np.ndarray,
                 spacing: np.ndarray, ramp: float, size: np.ndarray, flat_out: np.ndarray) -> None:
    """Coverage of one chunk of segments: arrays ``(k, nb)`` (segment, offset in its box)."""
    f32 = np.float32
    ab = ((ib - ia) * spacing).astype(f32)
    inv_len2 = (1.0 / np.maximum((ab * ab).sum(axis=1), 1e-12)).astype(f32)[:, None]
    base = ((lo - ia) * spacing).astype(f32)  # voxel lo relative to a, index-scaled mm
    step = (off * spacing).astype(f32)
    t = None
    for c in range(3):
        term = (base[:, c:c + 1] * ab[:, c:c + 1]) + step[None, :, c] * ab[:, c:c + 1]
        t = term if t is None else t + term
    t *= inv_len2
    np.clip(t, 0.0, 1.0, out=t)
    d2 = None
    for c in range(3):
        q = base[:, c:c + 1] + step[None, :, c]
        q -= t * ab[:, c:c + 1]
        d2 = q * q if d2 is None else d2 + q * q
    ra = s[:, 6:7].astype(f32)
    t *= s[:, 7:8].astype(f32) - ra
    t += ra  # radius at the closest point
    cover = np.sqrt(d2)
    cover -= t
    cover *= f32(-1.0 / ramp)
    cover += f32(0.5)
    nx, ny = int(size[0]), int(size[1])
    flat = ((lo[:, 2] * ny + lo[:, 1]) * nx + lo[:, 0])[:, None] + ((off[:, 2] * ny + off[:, 1]) * nx + off[:, 0])[None]
    ok = cover > 0
    inside = np.all((lo >= 0) & (lo + off.max(axis=0) < size), axis=1)
    if not inside.all():  # segments near the faces: drop offsets that leave the grid
        edge = np.flatnonzero(~inside)
        for c in range(3):
            pos = lo[edge, c:c + 1] + off[None, :, c]
            ok[edge] &= (pos >= 0) & (pos < size[c])
    np.maximum.at(flat_out, flat[ok], (np.minimum(cover[ok], 1.0) * 255.0 + 0.5).astype(np.uint8))


def blend_coverage(hu: np.ndarray, coverage: np.ndarray, value_hu: float, within: np.ndarray | None = None,
                   mask: np.ndarray | None = None) -> None:
    """Blend ``value_hu`` into ``hu`` (float32) by ``coverage``/255, only where ``within`` is nonzero.

    Voxels at least half covered (centre inside a tube) get 1 in ``mask``.
    """
    sel = np.flatnonzero(coverage)
    if within is not None:
        sel = sel[within.reshape(-1)[sel] > 0]
    c = coverage.reshape(-1)[sel].astype(np.float32) / np.float32(255.0)
    flat = hu.reshape(-1)
    flat[sel] += c * (np.float32(value_hu) - flat[sel])
    if mask is not None:
        mask.reshape(-1)[sel[c >= 0.5]] = 1
