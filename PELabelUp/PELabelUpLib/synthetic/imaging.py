"""Image formation: partial-volume blur, correlated quantum noise, rounding to int16 HU.

The noise is white Gaussian noise added *before* the blur, scaled so that after the blur its standard
deviation is exactly the requested ``noise_sigma_hu``: the result is statistically the same as blurring and
then adding noise filtered by the scanner's point-spread function, i.e. the spatially correlated ("grainy")
noise of real CT, and it costs one filtering pass instead of two. Everything painted before this step
(clots included) gets the same blur and the same noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from .voxels import slabs

TRUNCATE = 3.0
HU_MIN, HU_MAX = -1024, 3071


def noise_gain(sigma_vox: float) -> float:
    """Factor by which a 1-D Gaussian filter of ``sigma_vox`` (voxels) scales white-noise standard deviation."""
    if sigma_vox <= 0:
        return 1.0
    radius = int(TRUNCATE * sigma_vox + 0.5)
    delta = np.zeros(2 * radius + 1)
    delta[radius] = 1.0
    kernel = ndimage.gaussian_filter1d(delta, sigma_vox, truncate=TRUNCATE, mode="constant")
    return float(np.sqrt((kernel**2).sum()))


def form_image(hu: np.ndarray, geometry: Geometry, rng: np.random.Generator, noise_sigma_hu: float,
               blur_sigma_vox: tuple[float, float, float]) -> np.ndarray:
    """Blur and add noise to ``hu`` (float32 ``(Z, Y, X)``, modified in place); return int16 HU.

    Args:
        hu: painted attenuation, HU, float32 ``(Z, Y, X)``.
        geometry: its grid.
        rng: source of the noise.
        noise_sigma_hu: standard deviation of the noise in the final image (uniform regions), HU.
        blur_sigma_vox: Gaussian sigma along ``(Z, Y, X)`` in voxels (slice profile, in-plane PSF).
    """
    if hu.dtype != np.float32 or hu.shape != geometry.shape_zyx:
        raise ValueError(f"hu must be float32 {geometry.shape_zyx}, got {hu.dtype} {hu.shape}")
    if noise_sigma_hu < 0:
        raise ValueError(f"noise_sigma_hu must be >= 0, got {noise_sigma_hu}")
    gain = float(np.prod([noise_gain(s) for s in blur_sigma_vox]))
    white = np.float32(noise_sigma_hu / gain)
    for box in slabs(geometry, max_voxels=2_000_000):
        region = hu[box]
        region += rng.standard_normal(region.shape, dtype=np.float32) * white
    ndimage.gaussian_filter(hu, blur_sigma_vox, output=hu, mode="nearest", truncate=TRUNCATE)
    np.rint(hu, out=hu)
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    return hu.astype(np.int16)
