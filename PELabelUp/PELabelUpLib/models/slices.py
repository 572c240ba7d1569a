"""2.5-D slice inputs of the PE classifier, and the way back from slice heatmaps to the volume.

Each axial slice ``k`` of the input grid (its third index) becomes one sample: the PE-windowed slices
``k - context .. k + context`` masked to the (dilated) artery territory, plus the territory of slice ``k``
as a last channel. Slices are resampled in-plane to ``pixel_mm`` and cropped to a ``size_px`` square
centred on the territory, so the classifier sees the arteries at one physical scale and nothing of the
bones and body wall that carry position cues. Slice labels therefore stay those of the input grid.

Arrays are ``(Z, Y, X)``; spacing is ``(x, y, z)`` mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..preprocessing import apply_window


@dataclass(frozen=True)
class SliceSpec:
    """How the classifier sees a slice (stored in ``metadata["preprocessing"]``).

    Attributes:
        pixel_mm: in-plane pixel size of the classifier's input, mm.
        size_px: side of the square input, pixels.
        context: neighbouring slices on each side (channels = ``2 * context + 2``).
        window_hu: (level, width) HU window mapped to [0, 1].
        territory_dilation_mm: the territory is grown in-plane by this much before masking, so the vessel
            wall and a little surrounding tissue stay visible.
    """

    pixel_mm: float = 1.5
    size_px: int = 160
    context: int = 1
    window_hu: tuple[float, float] = (100.0, 700.0)
    territory_dilation_mm: float = 3.0

    @property
    def channels(self) -> int:
        return 2 * self.context + 2

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> SliceSpec:
        p = metadata.get("preprocessing", {})
        return cls(pixel_mm=float(p.get("pixel_mm", cls.pixel_mm)), size_px=int(p.get("size_px", cls.size_px)),
                   context=int(p.get("context", cls.context)),
                   window_hu=tuple(p.get("window_hu", cls.window_hu)),
                   territory_dilation_mm=float(p.get("territory_dilation_mm", cls.territory_dilation_mm)))

    def as_metadata(self) -> dict[str, Any]:
        return {"pixel_mm": self.pixel_mm, "size_px": self.size_px, "context": self.context,
                "window_hu": list(self.window_hu), "territory_dilation_mm": self.territory_dilation_mm}


@dataclass(frozen=True)
class SliceFrame:
    """Where the classifier's square sits in each resampled slice (to paste heatmaps back).

    Attributes:
        shape_zyx: the input grid's array shape.
        resampled_yx: in-plane size after resampling to ``pixel_mm``.
        top_left_yx: position of the square's first pixel in the resampled plane (may be negative).
        size_px: side of the square.
    """

    shape_zyx: tuple[int, int, int]
    resampled_yx: tuple[int, int]
    top_left_yx: tuple[int, int]
    size_px: int

    def to_volume(self, slice_maps: np.ndarray) -> np.ndarray:
        """``(Z, size, size)`` maps -> ``float32 (Z, Y, X)`` on the input grid (zero outside the square)."""
        z, y, x = self.shape_zyx
        if slice_maps.shape != (z, self.size_px, self.size_px):
            raise ValueError(f"slice maps must be (Z, {self.size_px}, {self.size_px}) = "
                             f"{(z, self.size_px, self.size_px)}, got {slice_maps.shape}")
        plane = np.zeros((z, *self.resampled_yx), dtype=np.float32)
        (ty, tx), s = self.top_left_yx, self.size_px
        src_y0, src_x0 = max(0, -ty), max(0, -tx)
        dst_y0, dst_x0 = max(0, ty), max(0, tx)
        h = min(s - src_y0, self.resampled_yx[0] - dst_y0)
        w = min(s - src_x0, self.resampled_yx[1] - dst_x0)
        if h > 0 and w > 0:
            plane[:, dst_y0:dst_y0 + h, dst_x0:dst_x0 + w] = slice_maps[:, src_y0:src_y0 + h, src_x0:src_x0 + w]
        back = F.interpolate(torch.from_numpy(plane)[:, None], size=(y, x), mode="bilinear", align_corners=False)
        return back[:, 0].numpy()


@dataclass
class SliceStack:
    """Per-slice classifier planes of one volume, stored compactly.

    Attributes:
        image: ``uint8 (Z, size, size)``: windowed HU x dilated territory, scaled to 0..255.
        territory: ``uint8 (Z, size, size)``: the (undilated) territory, 0/1.
        frame: how to map the squares back onto the input grid.
    """

    image: np.ndarray
    territory: np.ndarray
    frame: SliceFrame

    def sample(self, k: int, context: int) -> np.ndarray:
        """Channels ``float32 (2 * context + 2, size, size)`` of slice ``k`` (edges repeat the end slice)."""
        z = self.image.shape[0]
        idx = np.clip(np.arange(k - context, k + context + 1), 0, z - 1)
        planes = self.image[idx].astype(np.float32) / 255.0
        return np.concatenate([planes, self.territory[k:k + 1].astype(np.float32)], axis=0)

    def batch(self, ks: np.ndarray | list[int], context: int) -> np.ndarray:
        return np.stack([self.sample(int(k), context) for k in ks])


def _resize_planes(planes: np.ndarray, size_yx: tuple[int, int], mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[:, None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(t, size=size_yx, mode=mode, **kwargs)[:, 0].numpy()


def _crop(planes: np.ndarray, top_left: tuple[int, int], size: int) -> np.ndarray:
    """Square ``(Z, size, size)`` crop of ``(Z, H, W)`` planes at ``top_left`` (zero where it overhangs)."""
    out = np.zeros((planes.shape[0], size, size), dtype=planes.dtype)
    (ty, tx), (hh, ww) = top_left, planes.shape[1:]
    src_y0, src_x0 = max(0, ty), max(0, tx)
    dst_y0, dst_x0 = max(0, -ty), max(0, -tx)
    h, w = min(hh - src_y0, size - dst_y0), min(ww - src_x0, size - dst_x0)
    if h > 0 and w > 0:
        out[:, dst_y0:dst_y0 + h, dst_x0:dst_x0 + w] = planes[:, src_y0:src_y0 + h, src_x0:src_x0 + w]
    return out


def build_slice_stack(hu: np.ndarray, territory: np.ndarray, spacing_mm: tuple[float, float, float],
                      spec: SliceSpec) -> SliceStack:
    """Prepare every axial slice of a volume for the classifier.

    Planes are resampled to ``spec.pixel_mm`` first and cropped, so the territory is dilated (a disk of
    ``territory_dilation_mm``) on the small square only.

    Args:
        hu: ``(Z, Y, X)`` HU.
        territory: ``(Z, Y, X)`` artery territory (0/1) on the same grid.
        spacing_mm: ``(x, y, z)`` of that grid.
        spec: the classifier's slice spec.
    """
    if hu.shape != territory.shape:
        raise ValueError(f"hu {hu.shape} and territory {territory.shape} must share one grid")
    z, y, x = hu.shape
    sx, sy = float(spacing_mm[0]), float(spacing_mm[1])
    resampled_yx = (max(1, round(y * sy / spec.pixel_mm)), max(1, round(x * sx / spec.pixel_mm)))
    terr_r = _resize_planes(territory.astype(np.float32), resampled_yx, "bilinear") >= 0.5
    if terr_r.any():
        _, cy, cx = ndimage.center_of_mass(terr_r)
    else:
        cy, cx = resampled_yx[0] / 2.0, resampled_yx[1] / 2.0
    s = spec.size_px
    top_left = (int(round(cy - s / 2.0)), int(round(cx - s / 2.0)))
    frame = SliceFrame(shape_zyx=(z, y, x), resampled_yx=resampled_yx, top_left_yx=top_left, size_px=s)
    terr = _crop(terr_r, top_left, s)
    return SliceStack(image=_masked_planes(hu, terr, frame, spec), territory=terr.astype(np.uint8), frame=frame)


def _masked_planes(hu: np.ndarray, terr_square: np.ndarray, frame: SliceFrame, spec: SliceSpec) -> np.ndarray:
    """``uint8 (n, size, size)``: planes ``hu (n, Y, X)`` windowed, resampled and cropped into ``frame``'s
    square, times the square territory ``terr_square (n, size, size)`` grown by ``territory_dilation_mm``
    in-plane. Every plane is made on its own, so any run of planes gives the rows of the whole stack."""
    image = _crop(_resize_planes(apply_window(hu, spec.window_hu), frame.resampled_yx, "bilinear"),
                  frame.top_left_yx, frame.size_px)
    grown = np.asarray(terr_square, dtype=bool)
    radius_px = spec.territory_dilation_mm / spec.pixel_mm
    if radius_px >= 0.5 and grown.any():
        r = int(np.ceil(radius_px))
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        grown = ndimage.binary_dilation(grown, structure=(yy ** 2 + xx ** 2 <= radius_px ** 2)[None])
    return np.clip(np.rint(image * grown * 255.0), 0, 255).astype(np.uint8)


def replace_planes(stack: SliceStack, hu_planes: np.ndarray, z0: int, spec: SliceSpec) -> SliceStack:
    """``stack`` with its slices ``z0 .. z0 + len(hu_planes) - 1`` rebuilt from new HU planes (same grid and
    territory): what :func:`build_slice_stack` gives for the changed volume, at the cost of those planes only
    (an iExplain round changes the CT inside the territory's box alone)."""
    n = int(hu_planes.shape[0])
    z, y, x = stack.frame.shape_zyx
    if hu_planes.shape[1:] != (y, x) or not 0 <= z0 <= z - n:
        raise ValueError(f"planes {hu_planes.shape} at z0={z0} do not fit the stack's grid {stack.frame.shape_zyx}")
    image = stack.image.copy()
    image[z0:z0 + n] = _masked_planes(hu_planes, stack.territory[z0:z0 + n] != 0, stack.frame, spec)
    return SliceStack(image=image, territory=stack.territory, frame=stack.frame)


def study_probability(slice_probabilities: np.ndarray, slice_spacing_mm: float, *, top_mm: float = 10.0) -> float:
    """Study PE probability: the mean of the highest slice probabilities over ``top_mm`` of z extent.

    ``K = max(1, round(top_mm / slice_spacing_mm))`` slices are averaged, so the aggregate depends on a fixed
    physical length of the most suspicious anatomy, not on how many slices the scan has (the maximum over
    300 slices rises with the slice count on a negative study; this mean of a fixed-length top segment barely
    does). An embolus shorter than ``top_mm`` lowers the score a little; the threshold is calibrated on
    training studies.
    """
    p = np.asarray(slice_probabilities, dtype=float).ravel()
    if p.size == 0:
        raise ValueError("no slice probabilities")
    if not slice_spacing_mm > 0:
        raise ValueError(f"slice_spacing_mm must be positive, got {slice_spacing_mm}")
    k = int(min(p.size, max(1, round(top_mm / slice_spacing_mm))))
    return float(np.sort(p)[-k:].mean())
