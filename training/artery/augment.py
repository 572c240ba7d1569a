"""Augmentation of artery training patches, in HU before the window; uses the artery mask only.

Anatomy-driven augmentations go beyond the usual flips and contrast jitter:

* **Synthetic filling defects**: a few balls of the artery lumen (whole or with a 1-voxel rim of contrast left)
  are given clot attenuation (20-90 HU). The label does not change: a clot-filled lumen is still artery
  territory, which is what the PE selector needs. Only the artery mask is used to place them; emboli masks
  are never read.
* **Occluded thin branches**: a stretch of a thin branch (local radius of at most ``occlusion_max_radius_vox``)
  loses its contrast as a clot that fills it would: each voxel's contrast share, read from its HU between lung
  and lumen, is given clot attenuation instead, so the partial-volume voxels at the wall darken in proportion
  and the stretch reads below 0 HU on the working grid, like the occlusive clots the network used to leave out
  of the territory. The label does not change.
* **Bright neighbours**: enhancing structures outside the artery mask (aorta, left heart, veins, bone) are made
  brighter, so that the network cannot rely on the phantoms' rule that the pulmonary arteries are the
  brightest vessels (real CTPA often has a dense aorta and left atrium).
* **Rotation and scaling** (:mod:`.warp`): the patch is resampled through a random affine before anything
  else, so the network sees the phantoms' anatomy at other calibres and angles. The patch sampler applies it
  (it needs a larger crop of the volume); the other steps act on the warped patch.

Arrays are ``(Z, Y, X)`` patches: HU ``int16``/``float32`` and a 0/1 ``uint8`` label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from PELabelUpLib.preprocessing import apply_window


@dataclass(frozen=True)
class Augmentation:
    """What is done to a training patch, in this order: rotation and scaling, defects, occlusions, bright
    neighbours, HU scale and shift, noise, flip.

    Attributes:
        flip_x_p: probability of mirroring along x (the patient's left/right); never y or z, which would put
            the heart above the lungs or the spine in front.
        hu_scale: range of a factor on HU (contrast strength).
        hu_shift: range of an offset added to HU.
        noise_hu: range of the standard deviation of added Gaussian noise, HU.
        defect_p: probability that a patch with artery gets synthetic filling defects.
        defects: range of their number in a patch.
        defect_radius_vox: range of their radius, voxels of the working grid.
        defect_hu: range of their attenuation, HU (acute clot).
        defect_rim_p: probability that a defect is partial (leaves a 1-voxel rim of contrast in the lumen).
        occlusion_p: probability that a patch with thin branches gets occluded stretches.
        occlusions: range of their number in a patch.
        occlusion_radius_vox: range of the radius of the ball (around a thin-branch voxel) that is occluded.
        occlusion_max_radius_vox: a branch is thin where no depth (distance to the mask's outside) nearby exceeds
            this (:func:`thin_branch_voxels`).
        occlusion_lung_hu: HU of the surroundings in the partial-volume model (aerated lung).
        bright_p: probability of brightening the enhancing structures outside the artery mask.
        bright_gain: range of ``g`` in ``hu + g * (hu - bright_from_hu)`` for those voxels.
        bright_from_hu: voxels above this HU (outside the artery mask) are brightened.
        spatial_p: probability that a patch is rotated and scaled (:func:`.warp.random_affine`).
        rotate_deg: largest rotation about the Z, Y and X axes, degrees.
        scale: range of the zoom (above 1 the anatomy looks larger).
        stretch: a further zoom per axis, uniform in ``1 +- stretch``.
    """

    flip_x_p: float = 0.5
    hu_scale: tuple[float, float] = (0.9, 1.1)
    hu_shift: tuple[float, float] = (-30.0, 30.0)
    noise_hu: tuple[float, float] = (0.0, 12.0)
    defect_p: float = 0.0
    defects: tuple[int, int] = (1, 3)
    defect_radius_vox: tuple[float, float] = (2.0, 6.0)
    defect_hu: tuple[float, float] = (20.0, 90.0)
    defect_rim_p: float = 0.4
    occlusion_p: float = 0.0
    occlusions: tuple[int, int] = (1, 4)
    occlusion_radius_vox: tuple[float, float] = (2.0, 5.0)
    occlusion_max_radius_vox: float = 2.5
    occlusion_lung_hu: float = -850.0
    bright_p: float = 0.0
    bright_gain: tuple[float, float] = (0.3, 1.5)
    bright_from_hu: float = 120.0
    spatial_p: float = 0.0
    rotate_deg: tuple[float, float, float] = (15.0, 10.0, 10.0)
    scale: tuple[float, float] = (0.8, 1.25)
    stretch: float = 0.1


#: flips, contrast jitter and noise
LIGHT_AUGMENTATION = Augmentation()
#: light, plus synthetic filling defects in the lumen and brighter non-arterial vessels
ANATOMY_AUGMENTATION = Augmentation(defect_p=0.5, bright_p=0.4)
#: anatomy, plus occluded stretches of thin branches (clot with the wall's partial volume)
OCCLUSION_AUGMENTATION = Augmentation(defect_p=0.5, bright_p=0.4, occlusion_p=0.6)
#: occlusion, plus random rotation and scaling of two patches in three
SPATIAL_AUGMENTATION = replace(OCCLUSION_AUGMENTATION, spatial_p=0.67)
NO_AUGMENTATION = Augmentation(flip_x_p=0.0, hu_scale=(1.0, 1.0), hu_shift=(0.0, 0.0), noise_hu=(0.0, 0.0))
AUGMENTATIONS = {"none": NO_AUGMENTATION, "light": LIGHT_AUGMENTATION, "anatomy": ANATOMY_AUGMENTATION,
                 "occlusion": OCCLUSION_AUGMENTATION, "spatial": SPATIAL_AUGMENTATION}


def _random_ball(voxels: np.ndarray, shape: tuple[int, ...], radius_range: tuple[float, float], margin: int,
                 rng: np.random.Generator) -> tuple[tuple[slice, ...], np.ndarray, float]:
    """A ball round a random one of the flat ``voxels``: its box (radius + ``margin`` voxels each way, clipped to
    ``shape``), the squared distance of the box's voxels to its centre, and its random radius."""
    centre = np.asarray(np.unravel_index(int(rng.choice(voxels)), shape))
    radius = float(rng.uniform(*radius_range))
    reach = int(np.ceil(radius)) + margin
    box = tuple(slice(max(c - reach, 0), min(c + reach + 1, n)) for c, n in zip(centre, shape, strict=True))
    distance2 = sum((g - c) ** 2 for g, c in zip(np.ogrid[box], centre, strict=True))
    return box, distance2, radius


def implant_defects(hu: np.ndarray, label: np.ndarray, augmentation: Augmentation,
                    rng: np.random.Generator) -> np.ndarray:
    """Give a few balls of the lumen clot attenuation, in place on float32 ``hu``; returns the defects' mask.

    Each defect is the artery voxels within a random radius of a random artery voxel (minus the lumen's outer
    voxel layer for a partial defect), blended in with a Gaussian edge (sigma 0.7 voxel) that stays in the lumen.
    """
    defects = np.zeros(label.shape, dtype=bool)
    lumen = label > 0
    voxels = np.flatnonzero(lumen)
    if voxels.size == 0:
        return defects
    lo, hi = augmentation.defects
    for _ in range(int(rng.integers(lo, hi + 1))):
        box, distance2, radius = _random_ball(voxels, label.shape, augmentation.defect_radius_vox, 2, rng)
        region = lumen[box] & (distance2 <= radius**2)
        if rng.random() < augmentation.defect_rim_p:
            region &= ndimage.binary_erosion(lumen[box])
        if not region.any():
            continue
        weight = ndimage.gaussian_filter(region.astype(np.float32), 0.7) * lumen[box]  # soft, within the lumen
        value = np.float32(rng.uniform(*augmentation.defect_hu))
        hu[box] = hu[box] * (1.0 - weight) + value * weight
        defects[box] |= region
    return defects


def thin_branch_voxels(label: np.ndarray, max_radius_vox: float) -> np.ndarray:
    """Bool mask of the label voxels whose branch is thin: no depth above ``max_radius_vox`` nearby.

    Depth is the Euclidean distance (voxels) to the nearest voxel outside the label; the patch border does not
    count as outside. "Nearby" is a cube reaching ``ceil(max_radius_vox)`` voxels each way, so the wall voxels
    of a thick vessel (whose own depth is small) are not taken for a thin branch.
    """
    lumen = label > 0
    if not lumen.any():
        return lumen
    depth = ndimage.distance_transform_edt(np.pad(lumen, 1, mode="edge"))[1:-1, 1:-1, 1:-1]
    reach = int(np.ceil(max_radius_vox))
    return lumen & (ndimage.maximum_filter(depth, size=2 * reach + 1) <= max_radius_vox)


def implant_occlusions(hu: np.ndarray, label: np.ndarray, augmentation: Augmentation,
                       rng: np.random.Generator) -> np.ndarray:
    """Occlude a few stretches of thin branches, in place on float32 ``hu``; returns the occluded voxels' mask.

    Around a random thin-branch voxel, the label voxels within a random radius plus one voxel layer round them
    (the wall's partial-volume voxels) form the stretch. A voxel's contrast share is
    ``f = clip((hu - lung) / (lumen - lung), 0, 1)`` with ``lumen`` the 90th percentile of the label's HU in the
    patch; the stretch's voxels lose ``w * f * (lumen - clot)`` HU, ``w`` a Gaussian-edged (sigma 0.7 voxel)
    weight, ``clot`` drawn from ``defect_hu``. Aerated lung is left as it is; a fully opacified voxel becomes clot.
    """
    occluded = np.zeros(label.shape, dtype=bool)
    thin = np.flatnonzero(thin_branch_voxels(label, augmentation.occlusion_max_radius_vox))
    if thin.size == 0:
        return occluded
    lumen_mask = label > 0
    lumen_hu = float(np.percentile(hu[lumen_mask], 90))
    lung_hu = float(augmentation.occlusion_lung_hu)
    if lumen_hu <= lung_hu + 1.0:
        return occluded
    lo, hi = augmentation.occlusions
    for _ in range(int(rng.integers(lo, hi + 1))):
        box, distance2, radius = _random_ball(thin, label.shape, augmentation.occlusion_radius_vox, 3, rng)
        stretch = lumen_mask[box] & (distance2 <= radius**2)
        stretch = ndimage.binary_dilation(stretch, structure=np.ones((3, 3, 3), dtype=bool))
        stretch &= distance2 <= (radius + 1) ** 2
        weight = ndimage.gaussian_filter(stretch.astype(np.float32), 0.7)
        clot_hu = float(rng.uniform(*augmentation.defect_hu))
        share = np.clip((hu[box] - np.float32(lung_hu)) / np.float32(lumen_hu - lung_hu), 0.0, 1.0)
        hu[box] -= weight * share * np.float32(max(lumen_hu - clot_hu, 0.0))
        occluded[box] |= stretch
    return occluded


def brighten_neighbours(hu: np.ndarray, label: np.ndarray, gain: float, from_hu: float) -> None:
    """``hu += gain * (hu - from_hu)`` where ``hu > from_hu`` outside the artery mask (in place, float32)."""
    outside = (label == 0) & (hu > from_hu)
    hu[outside] += np.float32(gain) * (hu[outside] - np.float32(from_hu))


def _jitter_and_window(work: np.ndarray, window_hu: Sequence[float], augmentation: Augmentation,
                       rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    work = work * np.float32(rng.uniform(*augmentation.hu_scale)) + np.float32(rng.uniform(*augmentation.hu_shift))
    sigma = rng.uniform(*augmentation.noise_hu)
    if sigma > 0:
        work += rng.normal(0.0, sigma, size=work.shape).astype(np.float32)
    flip = bool(rng.random() < augmentation.flip_x_p)
    if flip:
        work = work[:, :, ::-1]
    return np.ascontiguousarray(apply_window(work, tuple(window_hu))), flip


def augment_and_window(hu: np.ndarray, label: np.ndarray, window_hu: Sequence[float], augmentation: Augmentation,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """HU patch and its artery label -> augmented, windowed ``float32`` image in [0, 1] and the (maybe flipped) label.

    Both inputs and outputs are ``(Z, Y, X)`` of one shape; the label's values never change.
    """
    if hu.shape != label.shape:
        raise ValueError(f"patch {hu.shape} and label {label.shape} differ in shape")
    work = hu.astype(np.float32)
    if augmentation.defect_p > 0 and rng.random() < augmentation.defect_p:
        implant_defects(work, label, augmentation, rng)
    if augmentation.occlusion_p > 0 and rng.random() < augmentation.occlusion_p:
        implant_occlusions(work, label, augmentation, rng)
    if augmentation.bright_p > 0 and rng.random() < augmentation.bright_p:
        brighten_neighbours(work, label, float(rng.uniform(*augmentation.bright_gain)), augmentation.bright_from_hu)
    image, flip = _jitter_and_window(work, window_hu, augmentation, rng)
    return image, np.ascontiguousarray(label[:, :, ::-1] if flip else label)


def augment_image(hu: np.ndarray, window_hu: Sequence[float], augmentation: Augmentation,
                  rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """HU patch ``(Z, Y, X)`` -> augmented, windowed ``float32`` image and whether it was mirrored along x.

    For callers that flip several arrays themselves (the segmenter's territory and clot label). Only the
    label-free steps run (contrast jitter, noise, flip); defects and bright neighbours need an artery label.
    """
    return _jitter_and_window(hu.astype(np.float32), window_hu, augmentation, rng)
