"""Fixtures of the io tests: small CT-like volumes built in memory (no phantom generator needed), a series."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from io_helpers import ct_like_hu

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_dicom_series
from PELabelUpLib.volume import CTVolume


@pytest.fixture
def volume_on() -> Callable[..., CTVolume]:
    """Factory: a CT-like volume on a given grid."""

    def make(geometry: Geometry, seed: int = 0) -> CTVolume:
        return CTVolume(hu=ct_like_hu(geometry.shape_zyx, seed), geometry=geometry, source="test volume")

    return make


@pytest.fixture
def a_ct_volume() -> CTVolume:
    """A 16x20x12 CT-like volume, anisotropic spacing, odd origin, identity direction."""
    g = Geometry((16, 20, 12), (0.7, 0.8, 2.5), (-10.5, 20.25, -300.0))
    return CTVolume(hu=ct_like_hu(g.shape_zyx), geometry=g, source="test volume")


@pytest.fixture
def a_series(tmp_path: Path, a_ct_volume: CTVolume) -> tuple[Path, list[Path]]:
    """The 12-slice test volume written as a DICOM series in ``tmp_path/series``."""
    folder = tmp_path / "series"
    return folder, write_dicom_series(a_ct_volume, folder)
