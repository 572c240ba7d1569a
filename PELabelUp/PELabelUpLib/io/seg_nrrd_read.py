"""Reading segments back from a 3D Slicer segmentation file (``.seg.nrrd``), without Slicer.

The layout is the one :mod:`.seg_nrrd` writes and Slicer saves: one layer is a 3-D NRRD, several a 4-D one whose
first axis is the layer (SimpleITK reads it as one component per layer). Each segment names its layer
(``SegmentN_Layer``, default 0) and its value there (``SegmentN_LabelValue``, default 1). The grid is the file's
own (``space origin`` is its first voxel's), so a file Slicer cropped to its segments' extent reads correctly as
long as it is brought onto the CT's grid in world space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import Geometry
from .seg_nrrd import SEG_NRRD_SUFFIX


def is_seg_nrrd(path: str | Path) -> bool:
    """Whether ``path`` is named as a Slicer segmentation file."""
    return Path(path).name.lower().endswith(SEG_NRRD_SUFFIX)


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a ``.seg.nrrd``: its ID and name, its layer and its value in that layer."""

    segment_id: str
    name: str
    layer: int
    label_value: int


def _int_field(image: sitk.Image, key: str, default: int, path: Path) -> int:
    if not image.HasMetaDataKey(key):
        return default
    text = image.GetMetaData(key).strip()
    try:
        return int(text)
    except ValueError:
        raise InputError(path, f"field {key} is not a whole number: {text[:40]!r}") from None


def segment_infos(image: sitk.Image, path: Path) -> list[SegmentInfo]:
    """The segments a ``.seg.nrrd`` header lists (``Segment0_ID``, ``Segment1_ID``, ... until one is missing)."""
    infos = []
    while image.HasMetaDataKey(f"Segment{len(infos)}_ID"):
        n = len(infos)
        segment_id = image.GetMetaData(f"Segment{n}_ID")
        name = image.GetMetaData(f"Segment{n}_Name") if image.HasMetaDataKey(f"Segment{n}_Name") else segment_id
        infos.append(SegmentInfo(segment_id, name, _int_field(image, f"Segment{n}_Layer", 0, path),
                                 _int_field(image, f"Segment{n}_LabelValue", 1, path)))
    return infos


def read_seg_nrrd(path: str | Path) -> tuple[np.ndarray, Geometry, list[SegmentInfo]]:
    """A ``.seg.nrrd`` as ``(layers (Z, Y, X, L), its grid, its segments)``.

    Raises:
        InputError: unreadable, not 3-D, no segment listed, a segment whose layer the file lacks.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file or folder not found" if not p.exists() else "is a folder, not a segmentation file")
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(p, f"cannot be read as a segmentation file ({' '.join(str(exc).split())[:160]})") from None
    if image.GetDimension() != 3:
        raise InputError(p, f"{image.GetDimension()}-D image: expected a 3-D segmentation")
    infos = segment_infos(image, p)
    if not infos:
        raise InputError(p, "lists no segment (no Segment0_ID field): not a 3D Slicer segmentation file")
    layers = sitk.GetArrayFromImage(image)
    if layers.ndim == 3:
        layers = layers[..., None]
    for info in infos:
        if not 0 <= info.layer < layers.shape[-1]:
            raise InputError(p, f"segment {info.name!r} lies in layer {info.layer}, but the file holds "
                                f"{layers.shape[-1]} layer(s)")
    return layers, Geometry.from_sitk(image), infos


def segment_mask(layers: np.ndarray, info: SegmentInfo) -> np.ndarray:
    """``bool (Z, Y, X)``: where ``info``'s layer holds its value."""
    return layers[..., info.layer] == info.label_value
