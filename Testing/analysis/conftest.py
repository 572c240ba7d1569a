"""Fixtures of the analysis tests: model folders on disk, a clot study as NIfTI and as a DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from analysis_helpers import clot_study, make_models_dir

from PELabelUpLib.io import write_dicom_series, write_volume
from PELabelUpLib.volume import CTVolume


@pytest.fixture(scope="session")
def a_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artery and classifier model folders (no segmenter): read-only for the tests."""
    return make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def a_clot_study() -> tuple[CTVolume, np.ndarray]:
    """The oblique, anisotropic clot study and its clot mask ``(Z, Y, X)``."""
    return clot_study()


@pytest.fixture(scope="session")
def a_nifti_study(tmp_path_factory: pytest.TempPathFactory, a_clot_study) -> Path:
    return write_volume(a_clot_study[0], tmp_path_factory.mktemp("nifti") / "study.nii.gz")


@pytest.fixture(scope="session")
def a_dicom_study(tmp_path_factory: pytest.TempPathFactory, a_clot_study) -> Path:
    folder = tmp_path_factory.mktemp("dicom") / "series"
    write_dicom_series(a_clot_study[0], folder)
    return folder
