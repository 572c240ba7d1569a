"""Grid helpers shared by the pseudo-mask modules: connectivity structures and spacing order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_RANK = {2: {4: 1, 8: 2}, 3: {6: 1, 18: 2, 26: 3}}


def structure(ndim: int, connectivity: int | None = None) -> np.ndarray:
    """Structuring element for ``connectivity`` neighbours (``None``: full, 8 in 2-D / 26 in 3-D)."""
    if ndim not in _RANK:
        raise ValueError(f"arrays must be 2-D or 3-D, got {ndim}-D")
    if connectivity is None:
        return ndimage.generate_binary_structure(ndim, ndim)
    choices = _RANK[ndim]
    if connectivity not in choices:
        raise ValueError(
            f"connectivity for {ndim}-D arrays must be one of {sorted(choices)}, got {connectivity}"
        )
    return ndimage.generate_binary_structure(ndim, choices[connectivity])


def spacing_for_array(spacing_mm: Sequence[float], ndim: int) -> tuple[float, ...]:
    """Spacing given in index order ``(x, y[, z])`` (as ``Geometry.spacing_mm``) -> array-axis order
    ``([Z,] Y, X)``; checked positive and finite."""
    values = tuple(float(s) for s in spacing_mm)
    if len(values) != ndim or not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing_mm must be {ndim} positive numbers in (x, y[, z]) order, got {spacing_mm}")
    return values[::-1]


def check_same_shape(**arrays: np.ndarray) -> None:
    """Fail fast unless all arrays share one 2-D or 3-D shape."""
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    first = next(iter(shapes.values()))
    if len(first) not in (2, 3) or any(s != first for s in shapes.values()):
        raise ValueError(f"arrays must share one 2-D or 3-D shape, got {shapes}")
