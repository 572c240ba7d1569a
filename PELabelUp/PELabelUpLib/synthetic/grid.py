"""The phantom's scan grid: size, spacing, slices, orientation and origin, drawn or overridden.

Drawn grids mimic what CTPA series look like: square (sometimes not) matrices of 96-512 voxels, 0.6-1.5 mm
pixels, 0.6-2.5 mm slices; most are axial (identity direction) and some oblique (a tilt of 3-15 degrees,
like a gantry tilt or an oblique reformat). Wide fields of view are centred on the body; small ones
(targeted reconstructions, under 280 mm) on the pulmonary trunk and hila. The slices cover the pulmonary
arteries (diaphragm to above the aortic arch) unless the volume would exceed :data:`MAX_DRAWN_VOXELS`; then
slices get thicker (up to 2.5 mm) and, failing that, fewer, centred on the hila.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..geometry import Geometry
from .anatomy import Anatomy

SIZES_XY = (96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
SLICE_SPACINGS_MM = (0.625, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5)
MAX_DRAWN_VOXELS = 512 * 512 * 256
TARGETED_FOV_MM = 280.0


def rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """3x3 rotation matrix about unit ``axis`` by ``angle_deg`` (Rodrigues)."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    a = np.deg2rad(angle_deg)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * (kx @ kx)


def _check_size(size_xy: Any) -> tuple[int, int]:
    sizes = (size_xy, size_xy) if np.isscalar(size_xy) else tuple(size_xy)
    if len(sizes) != 2 or any(int(s) != s or int(s) < 8 for s in sizes):
        raise ValueError(f"size_xy must be an integer >= 8 or two of them, got {size_xy!r}")
    return int(sizes[0]), int(sizes[1])


def _check_direction(direction: Any) -> np.ndarray:
    d = np.asarray(direction, dtype=float)
    if d.size != 9 or not np.allclose(d.reshape(3, 3).T @ d.reshape(3, 3), np.eye(3), atol=1e-5):
        raise ValueError(f"direction must be 9 floats of an orthonormal 3x3 matrix (row-major), got {direction!r}")
    return d.reshape(3, 3)


def draw_geometry(rng: np.random.Generator, anat: Anatomy, *, size_xy: Any = None, n_slices: int | None = None,
                  spacing_mm: Any = None, direction: Any = None,
                  origin_mm: Any = None) -> tuple[Geometry, Anatomy, dict[str, Any]]:
    """Draw the grid for ``anat`` (keyword arguments override the draws).

    Returns the geometry, the anatomy re-anchored when ``origin_mm`` is given (so the patient sits in the
    field of view whatever the origin), and a JSON-serialisable record of the draws.
    """
    draws = {
        "nx": int(rng.choice(SIZES_XY)),
        "non_square": bool(rng.random() < 0.2),
        "ny_factor": float(rng.uniform(0.72, 1.0)),
        "targeted": bool(rng.random() < 0.25),
        "fov_mm": float(rng.uniform(300, 440)),
        "targeted_fov_mm": float(rng.uniform(60, 220)),
        "slice_mm": float(rng.choice(SLICE_SPACINGS_MM)) if rng.random() < 0.7 else float(rng.uniform(0.6, 2.5)),
        "oblique": bool(rng.random() < 0.25),
        "tilt_axis_lr": bool(rng.random() < 0.6),
        "axis": rng.normal(size=3),
        "angle_deg": float(rng.uniform(3, 15) * rng.choice([-1, 1])),
        "centre_jitter": rng.normal(0, 1, size=3),
        "extent_lo_mm": float(rng.uniform(40, 70)),
        "extent_hi_mm": float(rng.uniform(-20, 15)),
        "targeted_extent_mm": float(rng.uniform(80, 140)),
    }
    if size_xy is None:
        nx = draws["nx"]
        ny = max(96, int(round(nx * draws["ny_factor"] / 16) * 16)) if draws["non_square"] else nx
    else:
        nx, ny = _check_size(size_xy)
    if spacing_mm is None:
        fov = draws["targeted_fov_mm"] if draws["targeted"] else draws["fov_mm"]
        sxy = float(np.clip(fov / nx, 0.6, 1.5))
        spacing = [sxy, sxy, draws["slice_mm"]]
    else:
        spacing = [float(s) for s in np.asarray(spacing_mm, dtype=float).reshape(-1)]
        if len(spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing):
            raise ValueError(f"spacing_mm must be three positive numbers (x, y, z), got {spacing_mm!r}")
    targeted = max(nx * spacing[0], ny * spacing[1]) < TARGETED_FOV_MM
    s = anat.scale
    if targeted:  # the pulmonary trunk, hila and central arteries
        centre_body = np.array([8.0 * s[0], 4.0 * s[1], -15.0 * s[2]]) + draws["centre_jitter"] * [8, 8, 10]
    else:
        centre_body = np.array([0.0, anat.body_v, 0.0]) + draws["centre_jitter"] * [10, 10, 0]
    lo_w = min(anat.dome_right_w, anat.dome_left_w) - draws["extent_lo_mm"]
    hi_w = anat.apex_w + draws["extent_hi_mm"]
    if not targeted:
        centre_body[2] = 0.5 * (lo_w + hi_w) + draws["centre_jitter"][2] * 8
    extent = draws["targeted_extent_mm"] if targeted else hi_w - lo_w
    if n_slices is None:
        n = int(np.ceil(extent / spacing[2]))
        if spacing_mm is None and nx * ny * n > MAX_DRAWN_VOXELS:
            spacing[2] = float(min(2.5, extent * nx * ny / MAX_DRAWN_VOXELS))
            n = int(np.ceil(extent / spacing[2]))
        n = int(max(8, min(n, MAX_DRAWN_VOXELS // (nx * ny))))
        if not targeted and n * spacing[2] < extent:  # cut: centre the stack on the hila
            centre_body[2] = -25.0 * s[2]
    else:
        if int(n_slices) != n_slices or int(n_slices) < 1:
            raise ValueError(f"n_slices must be a positive integer, got {n_slices!r}")
        n = int(n_slices)
    if direction is None:
        if draws["oblique"]:
            axis = np.array([1.0, 0.0, 0.0]) if draws["tilt_axis_lr"] else draws["axis"]
            matrix = rotation(axis, draws["angle_deg"])
        else:
            matrix = np.eye(3)
    else:
        matrix = _check_direction(direction)
    size = np.array([nx, ny, n])
    half = matrix @ (np.asarray(spacing) * (size - 1) / 2.0)
    if origin_mm is None:
        origin = np.asarray(anat.anchor_mm) + centre_body - half
    else:
        origin = np.asarray(origin_mm, dtype=float).reshape(-1)
        if origin.size != 3 or not np.all(np.isfinite(origin)):
            raise ValueError(f"origin_mm must be three finite numbers, got {origin_mm!r}")
        anat = replace(anat, anchor_mm=tuple(float(c) for c in origin + half - centre_body))
    geometry = Geometry(size=(nx, ny, n), spacing_mm=tuple(spacing), origin_mm=tuple(float(o) for o in origin),
                        direction=tuple(float(d) for d in matrix.reshape(-1)))
    record = {"size": [nx, ny, n], "spacing_mm": spacing, "origin_mm": [float(o) for o in origin],
              "direction": [float(d) for d in matrix.reshape(-1)], "targeted_fov": bool(targeted),
              "oblique_angle_deg": float(np.degrees(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1, 1))))}
    return geometry, anat, record
