"""Noise-matched implanting of clot into a real CT, and lungs from HU (for hybrid real-anatomy cases).

All arrays are ``(Z, Y, X)`` on one grid; HU throughout. Noise and partial-volume blur are defined per
voxel along each array axis, so they follow the grid's own voxel sizes (anisotropic and oblique grids
included: nothing here depends on the direction cosines except the LPS x used to split the lungs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import Geometry

log = logging.getLogger(__name__)

MAD_TO_SIGMA = 1.4826  # sigma of a normal distribution per median absolute deviation


@dataclass(frozen=True)
class NoiseModel:
    """Image noise measured in a real CT.

    Attributes:
        sigma_hu: noise standard deviation, HU.
        lag1_correlation_zyx: correlation of neighbouring voxels' noise along (Z, Y, X), of the fitted
            model (the raw residual's correlation corrected for the local-mean removal).
        kernel_sigma_vox_zyx: per-axis Gaussian kernel (voxels) that turns white noise into this noise.
        n_voxels: voxels the estimate used.
    """

    sigma_hu: float
    lag1_correlation_zyx: tuple[float, float, float]
    kernel_sigma_vox_zyx: tuple[float, float, float]
    n_voxels: int


def _gaussian_impulse(kernel_sigma_vox_zyx: tuple[float, ...], half: int) -> np.ndarray:
    """3-D impulse response ``(2 half + 1)^3`` of scipy's separable Gaussian with per-axis sigmas (voxels)."""
    g = np.zeros((2 * half + 1,) * 3)
    g[half, half, half] = 1.0
    for axis, s in enumerate(kernel_sigma_vox_zyx):
        if s > 0:
            g = ndimage.gaussian_filter1d(g, s, axis=axis, mode="constant")
    return g


def _lag1(h: np.ndarray, axis: int) -> float:
    a = [slice(None)] * 3
    b = [slice(None)] * 3
    a[axis], b[axis] = slice(0, -1), slice(1, None)
    return float((h[tuple(a)] * h[tuple(b)]).sum() / (h * h).sum())


def _residual_kernel(kernel_sigma_vox_zyx: tuple[float, ...], window_vox: int) -> tuple[np.ndarray, np.ndarray]:
    """Impulse responses ``(g, h)``: the noise kernel ``g`` and the residual kernel ``h = g - box(window) * g``."""
    half = window_vox // 2 + 4 * int(np.ceil(max(kernel_sigma_vox_zyx))) + 2
    g = _gaussian_impulse(kernel_sigma_vox_zyx, half)
    return g, g - ndimage.uniform_filter(g, window_vox, mode="constant")


def _fit_kernels(measured_lag1_zyx: list[float], window_vox: int) -> tuple[float, float, float]:
    """Per-axis Gaussian sigmas (voxels) whose *residual* noise has the measured lag-1 correlations.

    Coordinate-wise bisection (the axes interact only weakly), three sweeps.
    """
    sigmas = [0.0, 0.0, 0.0]
    for _ in range(3):
        for axis in range(3):
            target = measured_lag1_zyx[axis]

            def lag(s: float, axis: int = axis) -> float:
                trial = list(sigmas)
                trial[axis] = s
                return _lag1(_residual_kernel(tuple(trial), window_vox)[1], axis)

            if lag(0.0) >= target:
                sigmas[axis] = 0.0
                continue
            lo, hi = 0.0, 3.0
            if lag(hi) < target:
                sigmas[axis] = hi
                continue
            for _ in range(25):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if lag(mid) < target else (lo, mid)
            sigmas[axis] = 0.5 * (lo + hi)
    return (sigmas[0], sigmas[1], sigmas[2])


def kernel_sigma_for_lag1(rho: float) -> float:
    """Gaussian kernel sigma (voxels) whose smoothed white noise has lag-1 correlation ``rho`` along an axis."""
    if rho <= 0.0:
        return 0.0
    lo, hi = 0.0, 3.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _lag1(_gaussian_impulse((mid, 0.0, 0.0), 14), 0) < rho else (lo, mid)
    return 0.5 * (lo + hi)


def noise_residual(hu: np.ndarray, region: np.ndarray, *, window_vox: int = 5) -> np.ndarray:
    """High-pass residual: HU minus the mean of the ``region`` voxels in a ``window_vox`` cube (float32)."""
    weights = region.astype(np.float32)
    values = np.where(region, hu, 0).astype(np.float32)
    local_sum = ndimage.uniform_filter(values, window_vox, mode="constant")
    local_n = ndimage.uniform_filter(weights, window_vox, mode="constant")
    return (hu.astype(np.float32) - local_sum / np.maximum(local_n, 1e-6)).astype(np.float32)


def estimate_noise(hu: np.ndarray, artery_mask: np.ndarray, *, erosion_vox: int = 2,
                   window_vox: int = 5) -> NoiseModel:
    """Estimate noise sigma and texture in the contrast-filled lumen of a real CTA.

    The lumen is nearly homogeneous (contrast at ~550 HU), so its high-pass residual is noise: HU minus
    the local mean of the lumen voxels in a ``window_vox`` cube (5 voxels: small enough to follow slow
    contrast gradients). Over the lumen eroded by ``erosion_vox`` voxels (away from the wall's partial
    volume) we measure the residual's robust sigma (``1.4826 * MAD``) and its lag-1 correlation along each
    axis. Noise is modelled as white noise through a per-axis Gaussian kernel ``g``; the residual is that
    noise through ``h = g - box * g``, so the kernel is fitted until ``h`` reproduces the measured
    correlations, and sigma is corrected by ``sqrt(sum g^2 / sum h^2)`` (removing the local mean removes
    some noise, more so when it is correlated). This is exact away from the lumen's edge.

    Args:
        hu: ``(Z, Y, X)`` CT, HU.
        artery_mask: ``(Z, Y, X)`` lumen mask (non-zero inside).

    Raises:
        ValueError: when fewer than 200 eroded lumen voxels remain.
    """
    mask = np.asarray(artery_mask) != 0
    if mask.shape != hu.shape:
        raise ValueError(f"artery_mask shape {mask.shape} differs from the CT's {hu.shape}")
    core = ndimage.binary_erosion(mask, iterations=erosion_vox) if erosion_vox > 0 else mask
    n = int(core.sum())
    if n < 200:
        raise ValueError(f"too few lumen voxels to estimate noise: {n} after {erosion_vox}-voxel erosion (need 200)")
    residual = noise_residual(hu, mask, window_vox=window_vox)
    values = residual[core]
    sigma_residual = MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))
    measured = []
    for axis in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(0, -1), slice(1, None)
        both = core[tuple(a)] & core[tuple(b)]
        rho = float(np.corrcoef(residual[tuple(a)][both], residual[tuple(b)][both])[0, 1]) if both.sum() >= 50 else 0.0
        measured.append(rho if np.isfinite(rho) else 0.0)
    kernels = _fit_kernels(measured, window_vox)
    g, h = _residual_kernel(kernels, window_vox)
    sigma = sigma_residual * float(np.sqrt((g * g).sum() / (h * h).sum()))
    lag1 = tuple(_lag1(g, axis) for axis in range(3))
    model = NoiseModel(sigma_hu=sigma, lag1_correlation_zyx=lag1, kernel_sigma_vox_zyx=kernels,
                       n_voxels=n)
    log.debug("noise estimate: %s", model)
    return model


def correlated_noise(shape_zyx: tuple[int, int, int], noise: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean Gaussian noise with ``noise.sigma_hu`` and its per-axis correlation, float32 ``(Z, Y, X)``.

    White noise is smoothed with the model's per-axis Gaussian kernel and divided by the kernel's exact
    variance gain, so the expected standard deviation is ``sigma_hu`` whatever the kernel.
    """
    white = rng.standard_normal(shape_zyx, dtype=np.float32)
    gain = 1.0
    for axis, s in enumerate(noise.kernel_sigma_vox_zyx):
        if s <= 0:
            continue
        impulse = np.zeros(8 * int(np.ceil(s)) + 9)
        impulse[len(impulse) // 2] = 1.0
        h = ndimage.gaussian_filter1d(impulse, s, mode="constant")
        gain *= float(np.dot(h, h))
        white = ndimage.gaussian_filter1d(white, s, axis=axis, mode="wrap")
    return (white * np.float32(noise.sigma_hu / np.sqrt(gain))).astype(np.float32)


def partial_volume_weights(label_map: np.ndarray, artery_mask: np.ndarray, *, blur_vox: float = 0.7) -> np.ndarray:
    """Clot fraction per voxel, float32 ``(Z, Y, X)`` in [0, 1], non-zero only on embolus voxels.

    The binary embolus, together with everything outside the artery lumen, is blurred by a Gaussian of
    ``blur_vox`` voxels, and that blur is used on the embolus voxels that touch (6-neighbours)
    contrast-filled lumen: they become a partial-volume mix (~0.75 clot on a flat face, less at corners).
    Every other embolus voxel is pure clot (1), including those against the vessel wall, so no bright rim
    appears between an occlusive clot and the wall and the clot's interior keeps its exact mean HU.
    """
    clot = label_map > 0
    lumen = (np.asarray(artery_mask) != 0) & ~clot
    solid = (~lumen).astype(np.float32)
    alpha = np.clip(ndimage.gaussian_filter(solid, blur_vox, mode="nearest"), 0.0, 1.0)
    edge = clot & ndimage.binary_dilation(lumen)
    return np.where(edge, alpha, clot.astype(np.float32)).astype(np.float32)


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    out = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        out.append(slice(max(0, int(hits[0]) - pad), min(mask.shape[axis], int(hits[-1]) + 1 + pad)))
    return tuple(out)


def implant_clot(hu: np.ndarray, artery_mask: np.ndarray, label_map: np.ndarray,
                 clot_hu_by_label: Mapping[int, float], noise: NoiseModel, rng: np.random.Generator, *,
                 blur_vox: float = 0.7) -> np.ndarray:
    """Paint clot into a CT: ``(1 - a) * HU + a * (clot_hu + noise)`` on embolus voxels, ``a`` the clot fraction.

    Args:
        hu: ``(Z, Y, X)`` CT, HU (not modified).
        artery_mask: lumen mask; embolus voxels outside it are an error.
        label_map: ``(Z, Y, X)`` integer label map, 0 = none, k = embolus k.
        clot_hu_by_label: mean clot attenuation (HU) of every label present.
        noise: measured noise (:func:`estimate_noise`); the implant gets noise of that sigma and texture.
        rng: random source for the noise.
        blur_vox: partial-volume blur (:func:`partial_volume_weights`).

    Returns:
        int16 CT equal to ``hu`` everywhere except on embolus voxels.
    """
    clot = label_map > 0
    if clot.shape != hu.shape or np.shape(artery_mask) != hu.shape:
        raise ValueError(f"shapes differ: CT {hu.shape}, label map {clot.shape}, artery mask {np.shape(artery_mask)}")
    out = np.array(hu, dtype=np.int16, copy=True)
    if not clot.any():
        return out
    if np.any(clot & (np.asarray(artery_mask) == 0)):
        raise ValueError("label_map has embolus voxels outside the artery mask")
    labels = [int(v) for v in np.unique(label_map[clot])]
    missing = [v for v in labels if v not in clot_hu_by_label]
    if missing:
        raise ValueError(f"no clot HU given for labels {missing}")
    box = _bbox(clot, pad=4)
    sub_labels = label_map[box]
    alpha = partial_volume_weights(sub_labels, np.asarray(artery_mask)[box], blur_vox=blur_vox)
    lut = np.zeros(int(max(labels)) + 1, dtype=np.float32)
    for v in labels:
        lut[v] = clot_hu_by_label[v]
    target = lut[np.where(sub_labels > 0, sub_labels, 0).astype(np.intp)] + correlated_noise(sub_labels.shape, noise, rng)
    mixed = (1.0 - alpha) * hu[box].astype(np.float32) + alpha * target
    sub_out = out[box]
    sub_clot = sub_labels > 0
    sub_out[sub_clot] = np.clip(np.rint(mixed[sub_clot]), -1024, 3071).astype(np.int16)
    return out


def lungs_from_hu(hu: np.ndarray, geometry: Geometry, *, threshold_hu: float = -400.0,
                  air_hu: float = -950.0) -> np.ndarray:
    """Lung labels from HU: ``uint8 (Z, Y, X)``, 0 none, 1 right lung, 2 left lung.

    Lung = HU below ``threshold_hu``, minus air: voxels whose 3x3x3 median is below ``air_hu`` (trachea,
    main bronchi, air outside the body), grown by one voxel to drop their walls' partial volume; components
    smaller than 1 % of the largest are dropped. (The body outline is not used: a mediastinal crop cuts
    through the lungs, so they are not enclosed.) Left and right are split at the LPS x of the mediastinum,
    the least-populated lung column in the middle half of the lungs' x range (LPS +x is the patient's left).
    """
    if tuple(hu.shape) != geometry.shape_zyx:
        raise ValueError(f"hu shape {hu.shape} does not match grid (Z, Y, X) {geometry.shape_zyx}")
    air = ndimage.binary_dilation(ndimage.median_filter(hu, size=3) < air_hu)
    lung = (hu < threshold_hu) & ~air
    labels, n = ndimage.label(lung)
    if n == 0:
        return np.zeros(hu.shape, dtype=np.uint8)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    lung = np.isin(labels, np.flatnonzero(counts >= 0.01 * counts.max()))
    nz, ny, nx = hu.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij", sparse=True)
    d = geometry.direction_matrix
    sx, sy, sz = geometry.spacing_mm
    x_lps = geometry.origin_mm[0] + d[0, 0] * sx * i + d[0, 1] * sy * j + d[0, 2] * sz * k
    xs = x_lps[lung] if lung.any() else np.zeros(0)
    if xs.size == 0:
        return np.zeros(hu.shape, dtype=np.uint8)
    lo, hi = np.percentile(xs, [1, 99])
    bins = np.linspace(lo, hi, 41)
    hist, _ = np.histogram(xs, bins=bins)
    middle = slice(10, 30)  # the middle half of the x range
    valley = hist[middle]
    quiet = np.flatnonzero(valley <= valley.min())
    mid_x = float(0.5 * (bins[10 + quiet[0]] + bins[10 + quiet[-1] + 1]))
    out = np.zeros(hu.shape, dtype=np.uint8)
    out[lung & (x_lps < mid_x)] = 1
    out[lung & (x_lps >= mid_x)] = 2
    return out
