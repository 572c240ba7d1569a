"""Emboli segmenter (``pelabelup-segmenter``): a 3-D DynUNet that sees the CT and the artery territory.

It is trained on the label-up chain's pseudo-masks (or, as the fully supervised upper bound, on ground-truth
masks) and predicts an embolus probability per voxel. How a CT reaches the network (shared by inference and the
trainer, so both see the same input):

1. the artery territory (input grid) is grown by ``territory_dilation_mm`` (a Euclidean ball in mm, exact on
   anisotropic grids); the output is restricted to this grown territory;
2. the CT is cut to the box around the grown territory plus ``context_mm`` (index ranges of the input grid, so
   every kept voxel keeps its LPS position, oblique grids included);
3. the cut is resampled (linear, in world space) to the working spacing ``spacing_mm`` (:func:`working_geometry`),
   the territory with it (linear interpolation of 0/1, >= 0.5);
4. two channels: the CT in the PE window (``window_hu`` mapped to [0, 1]) and the territory (0/1);
5. sliding-window inference with ``roi_size`` windows (= the training patch, so a network with instance norm
   normalises over windows like those it was trained on), sigmoid, then the probability goes back (linear)
   onto the input's exact grid.

Working spacing: 1.0 mm isotropic. Subsegmental clots are 2-3 mm across: at the artery model's 1.5 mm they
are one or two voxels and partly lost to resampling; 1.0 mm keeps them. Working on the territory's box only
(not the chest) pays for it: a lung-wide box (about 250 x 180 x 230 mm with the margins) is about 10 M working
voxels at 1.0 mm, as many as the 1.5 mm artery model sees of a whole chest; 1.5 mm would be about 3x cheaper
(``benchmarks/bench_segmenter.py``).

Arrays are ``(Z, Y, X)``; sizes and spacings ``(x, y, z)`` mm; positions LPS mm.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..geometry import Geometry
from ..preprocessing import CropBox, apply_window, crop_geometry, mask_box, resample_like
from ..volume import CTVolume
from .inference import sliding_window_probability

log = logging.getLogger(__name__)

#: what the network's input channels hold, in order (recorded in the metadata)
CHANNELS = ("ct_pe_window", "artery_territory")
AIR_HU = -1024.0


@dataclass(frozen=True)
class SegmenterPreprocessing:
    """How the segmenter sees a CT (stored in ``metadata["preprocessing"]``).

    Attributes:
        spacing_mm: working grid spacing (x, y, z), mm (1.0 mm: see the module docstring).
        window_hu: (level, width) HU window of the CT channel, mapped to [0, 1] (the PE window).
        roi_size: sliding-window patch, voxels ``(Z, Y, X)`` of the working grid (= the training patch).
        threshold: probability at or above which a voxel is embolus.
        territory_dilation_mm: the territory is grown by this much; nothing outside is ever embolus.
        context_mm: CT kept around the grown territory's box, mm.
    """

    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    window_hu: tuple[float, float] = (100.0, 700.0)
    roi_size: tuple[int, int, int] = (64, 64, 64)
    threshold: float = 0.5
    territory_dilation_mm: float = 3.0
    context_mm: float = 16.0

    def __post_init__(self) -> None:
        if len(self.spacing_mm) != 3 or not all(math.isfinite(s) and s > 0 for s in self.spacing_mm):
            raise ValueError(f"spacing_mm must be three positive numbers (x, y, z), got {self.spacing_mm}")
        if len(self.roi_size) != 3 or any(int(r) < 1 for r in self.roi_size):
            raise ValueError(f"roi_size must be three positive sizes (Z, Y, X), got {self.roi_size}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}")
        for name in ("territory_dilation_mm", "context_mm"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> SegmenterPreprocessing:
        p = metadata.get("preprocessing", {})
        d = cls()
        return cls(spacing_mm=tuple(float(s) for s in p.get("spacing_mm", d.spacing_mm)),
                   window_hu=tuple(float(w) for w in p.get("window_hu", d.window_hu)),
                   roi_size=tuple(int(r) for r in p.get("roi_size", d.roi_size)),
                   threshold=float(p.get("threshold", d.threshold)),
                   territory_dilation_mm=float(p.get("territory_dilation_mm", d.territory_dilation_mm)),
                   context_mm=float(p.get("context_mm", d.context_mm)))

    def as_metadata(self) -> dict[str, Any]:
        return {"spacing_mm": list(self.spacing_mm), "window_hu": list(self.window_hu),
                "roi_size": list(self.roi_size), "threshold": self.threshold,
                "territory_dilation_mm": self.territory_dilation_mm, "context_mm": self.context_mm,
                "channels": list(CHANNELS)}


@dataclass
class SegmenterInput:
    """A CT prepared for the segmenter.

    Attributes:
        hu: HU ``(Z, Y, X)`` on the working grid (int16 for int16 input, else float32; -1024 outside the CT).
        territory: ``uint8 (Z, Y, X)`` 0/1 territory on the working grid.
        geometry: the working grid (LPS mm, spacing ``prep.spacing_mm``).
        box: where the cut sits in the input grid (numpy index ranges).
        box_geometry: the cut's grid (input spacing and direction).
        allowed: ``bool (Z, Y, X)`` grown territory on the *input* grid: the only voxels that may be embolus.
    """

    hu: np.ndarray
    territory: np.ndarray
    geometry: Geometry
    box: CropBox
    box_geometry: Geometry
    allowed: np.ndarray


def dilate_mm(mask: np.ndarray, spacing_mm: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Grow a ``(Z, Y, X)`` mask by a Euclidean ball of ``radius_mm`` (spacing ``(x, y, z)`` mm); bool out.

    Works on the mask's bounding box plus the radius only, so its cost follows the territory, not the scan.
    """
    grown = np.asarray(mask) != 0
    sampling_zyx = (float(spacing_mm[2]), float(spacing_mm[1]), float(spacing_mm[0]))
    box = mask_box(grown, margin_voxels=[int(math.ceil(radius_mm / s)) for s in sampling_zyx]) if radius_mm > 0 else None
    if box is None:
        return grown
    distance = ndimage.distance_transform_edt(~grown[box.slices], sampling=sampling_zyx)
    out = np.zeros_like(grown)
    out[box.slices] = distance <= radius_mm
    return out


def working_geometry(geometry: Geometry, spacing_mm: tuple[float, float, float]) -> Geometry:
    """The working grid over ``geometry``: same origin and direction, ``spacing_mm``, and enough voxels that its
    last voxel centre reaches the input's last one on every axis (so every input voxel centre lies inside the
    working grid, and a probability comes back for each; a rounded size could fall half a voxel short)."""
    size = tuple(int(math.ceil((n - 1) * s / w - 1e-6)) + 1
                 for n, s, w in zip(geometry.size, geometry.spacing_mm, spacing_mm, strict=True))
    return Geometry(size=size, spacing_mm=tuple(float(w) for w in spacing_mm), origin_mm=geometry.origin_mm,
                    direction=geometry.direction)


def prepare_segmenter_input(volume: CTVolume, territory: np.ndarray,
                            prep: SegmenterPreprocessing) -> SegmenterInput | None:
    """Steps 1-3 of the module docstring; ``None`` when the territory is empty (nothing can be embolus).

    Args:
        volume: CT in HU on any grid (oblique, anisotropic).
        territory: ``(Z, Y, X)`` artery territory (nonzero = inside) on ``volume``'s grid.
        prep: the segmenter's preprocessing.

    Raises:
        ValueError: the territory's shape differs from the volume's.
    """
    if tuple(territory.shape) != tuple(volume.hu.shape):
        raise ValueError(f"territory shape {territory.shape} differs from the volume's {volume.hu.shape}")
    geometry = volume.geometry
    allowed = dilate_mm(territory, geometry.spacing_mm, prep.territory_dilation_mm)
    box = mask_box(allowed, margin_voxels=[int(math.ceil(prep.context_mm / s)) for s in geometry.spacing_mm[::-1]])
    if box is None:
        return None
    box_geometry = crop_geometry(geometry, box)
    cut = CTVolume(hu=np.ascontiguousarray(volume.hu[box.slices]), geometry=box_geometry, source=volume.source)
    work = resample_like(cut, None, working_geometry(box_geometry, prep.spacing_mm), "linear", default_value=AIR_HU)
    fraction = resample_like((territory[box.slices] != 0).astype(np.float32), box_geometry, work.geometry,
                             "linear", default_value=0.0)
    return SegmenterInput(hu=work.hu, territory=(fraction >= 0.5).astype(np.uint8), geometry=work.geometry,
                          box=box, box_geometry=box_geometry, allowed=allowed)


def segmenter_channels(hu: np.ndarray, territory: np.ndarray, window_hu: tuple[float, float]) -> np.ndarray:
    """The network input of one volume or patch: ``float32 (2, Z, Y, X)`` = (PE-windowed CT, territory 0/1)."""
    if hu.shape != territory.shape:
        raise ValueError(f"hu {hu.shape} and territory {territory.shape} must share one grid")
    return np.stack([apply_window(hu, tuple(window_hu)), (territory != 0).astype(np.float32)])


def segmenter_probability(image: np.ndarray, network: nn.Module, prep: SegmenterPreprocessing, *,
                          device: str | torch.device = "cpu", precision: str = "auto",
                          sw_batch_size: int = 2) -> np.ndarray:
    """Sliding-window embolus probability ``float32 (Z, Y, X)`` of a ``(2, Z, Y, X)`` input (working grid;
    ``precision``: :mod:`~PELabelUpLib.models.inference`)."""
    if image.ndim != 4 or image.shape[0] != len(CHANNELS):
        raise ValueError(f"image must be ({len(CHANNELS)}, Z, Y, X), got {image.shape}")
    # MONAI pads volumes smaller than the patch (with 0: air, outside)
    return sliding_window_probability(image, network, prep.roi_size, device=device, precision=precision,
                                      sw_batch_size=sw_batch_size)


def predict_segmentation(volume: CTVolume, territory: np.ndarray, network: nn.Module, metadata: dict[str, Any], *,
                         device: str | torch.device = "cpu",
                         precision: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Emboli of ``volume`` on its own grid, restricted to the grown artery territory.

    Args:
        volume: CT in HU, any grid (oblique and anisotropic included).
        territory: ``(Z, Y, X)`` artery territory (nonzero inside) on ``volume``'s grid, e.g. from
            :func:`~PELabelUpLib.models.artery.predict_artery_territory` or corrected by a reader.
        network: the segmenter (``load_model(...)[0]``), in eval mode on ``device``.
        metadata: its model folder metadata (``preprocessing``: :class:`SegmenterPreprocessing`).
        device, precision: where and how the network runs (:mod:`~PELabelUpLib.models.inference`).

    Returns:
        ``(mask, probability)``: ``uint8 (Z, Y, X)`` 0/1 and ``float32 (Z, Y, X)`` in [0, 1], both exactly on
        ``volume.geometry``; both are 0 outside the territory grown by ``territory_dilation_mm``.
    """
    prep = SegmenterPreprocessing.from_metadata(metadata)
    shape = tuple(volume.hu.shape)
    prepared = prepare_segmenter_input(volume, np.asarray(territory), prep)
    if prepared is None:
        log.warning("empty artery territory: no embolus can be segmented")
        return np.zeros(shape, dtype=np.uint8), np.zeros(shape, dtype=np.float32)
    image = segmenter_channels(prepared.hu, prepared.territory, prep.window_hu)
    prob_work = segmenter_probability(image, network, prep, device=device, precision=precision)
    prob_box = resample_like(prob_work, prepared.geometry, prepared.box_geometry, "linear", default_value=0.0)
    prob = np.zeros(shape, dtype=np.float32)
    prob[prepared.box.slices] = np.clip(prob_box, 0.0, 1.0)
    prob[~prepared.allowed] = 0.0
    mask = (prob >= prep.threshold).astype(np.uint8)
    log.info("segmenter: %d embolus voxels (%.2f ml) in a %s working box", int(mask.sum()),
             mask.sum() * float(np.prod(volume.geometry.spacing_mm)) / 1000.0, prepared.geometry.size)
    return mask, prob
