"""Helpers of the io tests: the table of grids, CT-like values, geometry and error-message assertions, and
header rewrites that damage written DICOM files the way broken scanners or copies do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy.spatial.transform import Rotation

from PELabelUpLib.geometry import Geometry


def rotation_direction(axes: str, degrees: tuple[float, ...]) -> tuple[float, ...]:
    """Row-major 3x3 direction of a proper rotation (det +1), e.g. ``("x", (25,))`` or ``("xz", (20, -35))``."""
    return tuple(float(v) for v in Rotation.from_euler(axes, degrees, degrees=True).as_matrix().ravel())


# Table of grids every writer/reader pair must round-trip: (id, size xyz, spacing mm, origin LPS mm, direction)
GEOMETRIES = [
    pytest.param(Geometry((16, 20, 12), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), id="identity"),
    pytest.param(Geometry((16, 20, 12), (0.7, 0.7, 1.25), (-100.0, -150.0, -200.0), rotation_direction("x", (25.0,))), id="oblique-one-axis"),
    pytest.param(Geometry((16, 20, 12), (0.8, 0.8, 2.0), (12.5, -30.25, 40.0), rotation_direction("xz", (20.0, -35.0))), id="oblique-two-axes"),
    pytest.param(Geometry((16, 20, 12), (0.6, 0.9, 2.5), (0.0, 0.0, 0.0)), id="anisotropic"),
    pytest.param(Geometry((16, 20, 12), (0.75, 0.75, 1.5), (-321.123456, 45.678901, -1002.515625)), id="odd-origin"),
    pytest.param(Geometry((11, 23, 7), (0.683594, 0.683594, 0.625), (-175.158203, -180.658203, -330.75)), id="non-square"),
]  # fmt: skip


def ct_like_hu(shape_zyx: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """int16 HU ``(Z, Y, X)`` like a chest CT: air outside, a soft-tissue body, a lung, a contrast vessel, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape_zyx), indexing="ij")
    hu = np.full(shape_zyx, -1000.0)
    hu[(x / 0.9) ** 2 + (y / 0.8) ** 2 < 1] = 40.0
    hu[(x + 0.3) ** 2 + y**2 < 0.1] = 350.0  # a contrast-filled artery
    hu[((x - 0.35) / 0.3) ** 2 + (y / 0.5) ** 2 < 1] = -850.0  # a lung
    hu += rng.normal(0, 12, shape_zyx)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)  # the usual scanner range


def assert_same_geometry(
    got: Geometry, want: Geometry, tol_mm: float = 1e-4, tol_direction: float = 1e-6
) -> None:
    assert tuple(got.size) == tuple(want.size)
    np.testing.assert_allclose(got.spacing_mm, want.spacing_mm, rtol=0, atol=tol_mm)
    np.testing.assert_allclose(got.origin_mm, want.origin_mm, rtol=0, atol=tol_mm)
    np.testing.assert_allclose(got.direction, want.direction, rtol=0, atol=tol_direction)


def one_line_error(excinfo: pytest.ExceptionInfo, path: Path | str, *words: str) -> str:
    """The InputError message: one line, naming ``path`` and every word of the reason (case-insensitive)."""
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


def rewrite(path: Path, **attributes: object) -> None:
    """Change header attributes of one written file (``None`` deletes the attribute)."""
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def ipp(path: Path) -> np.ndarray:
    """ImagePositionPatient (LPS mm) of one DICOM file."""
    return np.array([float(v) for v in pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient])
