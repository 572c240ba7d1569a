"""Artery territory model: the pulmonary arterial tree *including* what fills it (contrast or clot).

The network (``ArteryUNet``, 3-D) works on a resampled, windowed copy of the CT; its probability map is put
back on the input's exact grid. Arrays are ``(Z, Y, X)``; spacing is ``(x, y, z)`` mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..errors import InputError
from ..geometry import Geometry
from ..preprocessing import apply_window, crop_volume, find_chest_box, resample_like, resample_to_spacing
from ..volume import CTVolume
from .inference import sliding_window_probability
from .norm_adaptation import adapt_batchnorm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArteryPreprocessing:
    """How the artery model sees a CT (stored in ``metadata["preprocessing"]``).

    Attributes:
        spacing_mm: working grid spacing (x, y, z), mm.
        window_hu: (level, width) HU window mapped to [0, 1].
        roi_size: sliding-window patch, voxels ``(Z, Y, X)`` of the working grid.
        threshold: probability above which a voxel is artery territory.
        min_component_fraction: the pulmonary arterial tree is one connected structure; 26-connected
            components smaller than this fraction of the largest are dropped (bright veins, the scanner table).
            0 keeps everything.
        crop_to_body: infer only inside the body's bounding box (see :func:`artery_input`).
        adapt_norm_patches: re-estimate the network's batch-norm statistics on this many random patches of the
            study before inferring (:mod:`.norm_adaptation`); 0 keeps the training statistics (and is what
            metadata without the key means).
        adapt_norm_patch: side of those patches, voxels of the working grid.
    """

    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)
    window_hu: tuple[float, float] = (100.0, 700.0)
    roi_size: tuple[int, int, int] = (96, 96, 96)
    threshold: float = 0.5
    min_component_fraction: float = 0.1
    crop_to_body: bool = True
    adapt_norm_patches: int = 0
    adapt_norm_patch: int = 64

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ArteryPreprocessing:
        p = metadata.get("preprocessing", {})
        return cls(spacing_mm=tuple(p.get("spacing_mm", cls.spacing_mm)),
                   window_hu=tuple(p.get("window_hu", cls.window_hu)),
                   roi_size=tuple(p.get("roi_size", cls.roi_size)),
                   threshold=float(p.get("threshold", cls.threshold)),
                   min_component_fraction=float(p.get("min_component_fraction", cls.min_component_fraction)),
                   crop_to_body=bool(p.get("crop_to_body", cls.crop_to_body)),
                   adapt_norm_patches=int(p.get("adapt_norm_patches", cls.adapt_norm_patches)),
                   adapt_norm_patch=int(p.get("adapt_norm_patch", cls.adapt_norm_patch)))

    def as_metadata(self) -> dict[str, Any]:
        return {"spacing_mm": list(self.spacing_mm), "window_hu": list(self.window_hu),
                "roi_size": list(self.roi_size), "threshold": self.threshold,
                "min_component_fraction": self.min_component_fraction, "crop_to_body": self.crop_to_body,
                "adapt_norm_patches": self.adapt_norm_patches, "adapt_norm_patch": self.adapt_norm_patch}


def artery_input(volume: CTVolume, prep: ArteryPreprocessing) -> tuple[np.ndarray, Geometry]:
    """The network input: ``float32 (Z, Y, X)`` in [0, 1] on the working grid, and that grid.

    With ``prep.crop_to_body`` the working grid covers only the body's box (:func:`find_chest_box`, 10 mm
    margin): the air around the patient and the scanner table's far side are never resampled or inferred
    (on a 512 x 512 field of view about a third of the grid). A volume without a body keeps its whole grid.
    """
    source = volume
    if prep.crop_to_body:
        try:
            source = crop_volume(volume, find_chest_box(volume))
        except InputError:
            log.debug("%s: no body found, the artery model sees the whole grid", volume.source or "volume")
    work = resample_to_spacing(source, prep.spacing_mm, interpolator="linear")
    return apply_window(work.hu, prep.window_hu).astype(np.float32, copy=False), work.geometry


def artery_probability(image: np.ndarray, network: nn.Module, prep: ArteryPreprocessing, *,
                       device: str | torch.device = "cpu", precision: str = "auto",
                       sw_batch_size: int = 2) -> np.ndarray:
    """Sliding-window probability ``float32 (Z, Y, X)`` of the artery territory on the working grid
    (``precision``: :mod:`~PELabelUpLib.models.inference`)."""
    return sliding_window_probability(image[None], network, prep.roi_size, device=device, precision=precision,
                                      sw_batch_size=sw_batch_size)


def keep_main_components(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """``mask`` without the 26-connected components smaller than ``min_fraction`` of the largest one."""
    mask = np.asarray(mask, dtype=bool)
    if min_fraction <= 0 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    log.debug("artery territory: kept %d of %d components", int(keep.sum()), n)
    return keep[labels]


def territory_from_probability(prob_work: np.ndarray, work_geometry: Geometry, geometry: Geometry,
                               prep: ArteryPreprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Working-grid probability -> ``(mask, probability)`` on ``geometry``.

    The main components are chosen on the working grid (a tenth of the voxels of a thin-slice CT, so
    labelling is cheap); the dropped components' probability is zeroed there, the map resampled linearly to
    ``geometry`` (outside the working grid: 0) and thresholded.
    """
    keep = keep_main_components(prob_work >= prep.threshold, prep.min_component_fraction)
    cleaned = np.where(keep | (prob_work < prep.threshold), prob_work, 0.0).astype(np.float32, copy=False)
    prob = resample_like(cleaned, work_geometry, geometry, "linear", default_value=0.0)
    prob = np.clip(prob, 0.0, 1.0).astype(np.float32, copy=False)
    return (prob >= prep.threshold).astype(np.uint8), prob


def predict_artery_territory(volume: CTVolume, network: nn.Module, metadata: dict[str, Any], *,
                             device: str | torch.device = "cpu",
                             precision: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Artery territory of ``volume`` on its own grid (``precision``: :mod:`~PELabelUpLib.models.inference`).

    With ``preprocessing.adapt_norm_patches`` in the metadata, a copy of ``network`` with batch-norm statistics
    re-estimated on the study runs instead (:func:`~.norm_adaptation.adapt_batchnorm`); ``network`` is unchanged.

    Returns:
        ``(mask, probability)``: ``uint8 (Z, Y, X)`` 0/1 and ``float32 (Z, Y, X)`` in [0, 1], both exactly on
        ``volume.geometry``.
    """
    prep = ArteryPreprocessing.from_metadata(metadata)
    image, work_geometry = artery_input(volume, prep)
    network = adapt_batchnorm(network, image[None], patches=prep.adapt_norm_patches, patch=prep.adapt_norm_patch,
                              device=device, precision=precision)
    prob_work = artery_probability(image, network, prep, device=device, precision=precision)
    del image
    mask, prob = territory_from_probability(prob_work, work_geometry, volume.geometry, prep)
    log.info("artery territory: %d voxels (%.1f ml)", int(mask.sum()),
             mask.sum() * float(np.prod(volume.geometry.spacing_mm)) / 1000.0)
    return mask, prob
