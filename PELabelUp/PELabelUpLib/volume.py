"""The in-memory CT volume every reader returns and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from .geometry import Geometry


@dataclass
class CTVolume:
    """A CT volume in Hounsfield units.

    Attributes:
        hu: ``(Z, Y, X)`` array in HU; ``int16`` when the stored values are whole numbers in range
            (the usual case), else ``float32``.
        geometry: the grid (LPS mm); ``hu.shape == geometry.shape_zyx``.
        source: where it was read from (a path), or a short description for generated volumes.
        meta: reader-specific facts (format, series UID, modality, slice gaps found, ...).
    """

    hu: np.ndarray
    geometry: Geometry
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"hu must be a 3-D (Z, Y, X) array, got shape {self.hu.shape}")
        if tuple(self.hu.shape) != self.geometry.shape_zyx:
            raise ValueError(f"hu shape {self.hu.shape} does not match grid (Z, Y, X) {self.geometry.shape_zyx}")

    def to_sitk(self) -> sitk.Image:
        return self.geometry.array_to_sitk(self.hu)

    @classmethod
    def from_sitk(cls, image: sitk.Image, source: str = "", **meta: Any) -> CTVolume:
        return cls(hu=sitk.GetArrayFromImage(image), geometry=Geometry.from_sitk(image), source=source, meta=meta)
