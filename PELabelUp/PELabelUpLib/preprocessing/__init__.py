"""Preprocessing of CT volumes: resampling, HU windows, cropping to the chest.

All functions keep geometry exact (LPS mm, oblique and anisotropic grids included). Arrays are
``(Z, Y, X)``; sizes, spacings and indices are ``(x, y, z)``.
"""

from __future__ import annotations

from .crop import (
    CropBox,
    body_mask,
    crop_geometry,
    crop_to_chest,
    crop_volume,
    find_chest_box,
    mask_box,
    uncrop,
)
from .resample import (
    INTERPOLATORS,
    Interpolator,
    resample_like,
    resample_to_spacing,
    target_geometry_for_spacing,
)
from .window import WINDOWS, WindowName, apply_window, window_bounds_hu

__all__ = [
    "INTERPOLATORS",
    "WINDOWS",
    "CropBox",
    "Interpolator",
    "WindowName",
    "apply_window",
    "body_mask",
    "crop_geometry",
    "crop_to_chest",
    "crop_volume",
    "find_chest_box",
    "mask_box",
    "resample_like",
    "resample_to_spacing",
    "target_geometry_for_spacing",
    "uncrop",
    "window_bounds_hu",
]
