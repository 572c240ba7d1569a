"""HU display/normalisation windows as typed presets."""

from __future__ import annotations

from typing import Literal

import numpy as np

WindowName = Literal["pe", "mediastinal", "lung"]

#: Named windows as ``(level_hu, width_hu)``. ``pe`` is the usual CTPA window for filling defects.
WINDOWS: dict[str, tuple[float, float]] = {
    "pe": (100.0, 700.0),
    "mediastinal": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
}


def window_bounds_hu(window: WindowName | str | tuple[float, float]) -> tuple[float, float]:
    """``(low_hu, high_hu)`` = ``(level - width/2, level + width/2)`` of a named or ``(level, width)`` window."""
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}; choose one of {sorted(WINDOWS)} or pass (level, width)")
        level_hu, width_hu = WINDOWS[window]
    else:
        try:
            level_hu, width_hu = (float(v) for v in window)
        except (TypeError, ValueError):
            raise ValueError(f"window must be a name or (level_hu, width_hu), got {window!r}") from None
    if not np.isfinite(level_hu) or not np.isfinite(width_hu) or width_hu <= 0:
        raise ValueError(f"window width must be positive and finite, got level {level_hu}, width {width_hu}")
    return level_hu - width_hu / 2.0, level_hu + width_hu / 2.0


def apply_window(hu: np.ndarray, window: WindowName | str | tuple[float, float]) -> np.ndarray:
    """Map HU linearly to ``[0, 1]`` through a window, clipping outside it.

    Args:
        hu: array of HU of any shape (usually ``(Z, Y, X)``).
        window: a name in :data:`WINDOWS` or ``(level_hu, width_hu)``.

    Returns:
        float32 array of ``hu``'s shape: ``level - width/2`` -> 0, ``level + width/2`` -> 1.
    """
    low_hu, high_hu = window_bounds_hu(window)
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low_hu)) / np.float32(high_hu - low_hu)
    return np.clip(out, 0.0, 1.0, out=out)
