"""Property-based tests of the readers: random grids round-trip, damaged files give InputError and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from io_helpers import assert_same_geometry, ct_like_hu
from scipy.spatial.transform import Rotation

from PELabelUpLib.errors import InputError
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import (
    NIFTI_TOLERANCE_DIRECTION,
    NIFTI_TOLERANCE_MM,
    load_ct,
    write_dicom_series,
    write_volume,
)
from PELabelUpLib.volume import CTVolume

FORMATS = [".nrrd", ".mha", ".nii.gz", ".nii", "dicom"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

spacings = st.floats(min_value=0.3, max_value=6.0, allow_nan=False)
origins = st.floats(min_value=-600.0, max_value=600.0, allow_nan=False)
angles = st.floats(min_value=-180.0, max_value=180.0, allow_nan=False)


@st.composite
def grids(draw: st.DrawFn) -> Geometry:
    """A small grid with any spacing, origin and any proper rotation (det +1) as direction."""
    size = (draw(st.integers(2, 7)), draw(st.integers(2, 7)), draw(st.integers(2, 6)))
    rotation = Rotation.from_euler("zyx", [draw(angles), draw(angles) / 2, draw(angles)], degrees=True)
    return Geometry(
        size=size,
        spacing_mm=(draw(spacings), draw(spacings), draw(spacings)),
        origin_mm=(draw(origins), draw(origins), draw(origins)),
        direction=tuple(float(v) for v in rotation.as_matrix().ravel()),
    )


def _write(volume: CTVolume, folder: Path, fmt: str) -> Path:
    if fmt == "dicom":
        write_dicom_series(volume, folder / "series")
        return folder / "series"
    return write_volume(volume, folder / f"ct{fmt}")


def _random_hu(geometry: Geometry, seed: int) -> np.ndarray:
    hu = np.random.default_rng(seed).integers(-1024, 3072, geometry.shape_zyx).astype(np.int16)
    hu.flat[0], hu.flat[-1] = -1000, 400  # air and contrast: a CT, whatever the draw
    return hu


@SETTINGS
@given(geometry=grids(), seed=st.integers(0, 2**32 - 1), fmt=st.sampled_from(FORMATS))
def test_random_volumes_round_trip(tmp_path_factory, geometry, seed, fmt):
    volume = CTVolume(_random_hu(geometry, seed), geometry)
    back = load_ct(_write(volume, tmp_path_factory.mktemp("rt"), fmt))
    assert back.hu.dtype == np.int16
    np.testing.assert_array_equal(back.hu, volume.hu)
    if fmt.startswith(".nii"):
        assert_same_geometry(back.geometry, geometry, NIFTI_TOLERANCE_MM, NIFTI_TOLERANCE_DIRECTION)
    elif fmt == "dicom":
        assert_same_geometry(back.geometry, geometry, 1e-4, 1e-6)
    else:
        assert_same_geometry(back.geometry, geometry, 1e-9, 1e-12)


SMALL = Geometry((10, 8, 3), (0.7, 0.7, 2.0), (-40.0, -30.0, -100.0))


def _small_series(folder: Path) -> list[Path]:
    """The same three-slice series every time (fixed UIDs), so one slice can be swapped for a damaged copy."""
    volume = CTVolume(ct_like_hu(SMALL.shape_zyx), SMALL)
    return write_dicom_series(
        volume, folder, study_uid="1.2.826.0.1.3680043.10.1", series_uid="1.2.826.0.1.3680043.10.2"
    )


@pytest.fixture(scope="module", params=FORMATS)
def a_valid_file(request, tmp_path_factory) -> tuple[str, bytes]:
    """(format, bytes) of a small valid file; for DICOM, the middle slice of a three-slice series."""
    folder = tmp_path_factory.mktemp("valid")
    if request.param == "dicom":
        return request.param, _small_series(folder / "series")[1].read_bytes()
    return request.param, _write(
        CTVolume(ct_like_hu(SMALL.shape_zyx), SMALL), folder, request.param
    ).read_bytes()


def _load_damaged(tmp_root: Path, fmt: str, original: bytes, damaged: bytes) -> None:
    """Write the damaged bytes where the loader looks (a lone file, or one slice of a series) and load."""
    if fmt == "dicom":
        paths = _small_series(tmp_root / "series")
        assert paths[1].read_bytes() == original
        paths[1].write_bytes(damaged)
        load_ct(tmp_root / "series")
    else:
        path = tmp_root / f"damaged{fmt}"
        path.write_bytes(damaged)
        load_ct(path)


@SETTINGS
@given(data=st.data())
def test_corrupted_bytes_load_or_raise_input_error(tmp_path_factory, a_valid_file, data):
    fmt, original = a_valid_file
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8), label="n_changes")):
        in_header = data.draw(st.booleans(), label="in_header")
        limit = min(len(damaged), 600) if in_header else len(damaged)
        damaged[data.draw(st.integers(0, limit - 1), label="position")] = data.draw(
            st.integers(0, 255), label="byte"
        )
    message = ""
    try:
        _load_damaged(tmp_path_factory.mktemp("bad"), fmt, original, bytes(damaged))
    except InputError as err:  # loading may also succeed: a changed voxel byte is undetectable
        message = str(err)
    assert "\n" not in message


@SETTINGS
@given(data=st.data())
def test_truncated_files_raise_input_error(tmp_path_factory, a_valid_file, data):
    fmt, original = a_valid_file
    cut = data.draw(st.integers(0, len(original) - 1), label="cut")
    with pytest.raises(InputError) as err:
        _load_damaged(tmp_path_factory.mktemp("cut"), fmt, original, original[:cut])
    assert "\n" not in str(err.value)
