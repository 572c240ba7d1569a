"""Shared pytest fixtures. Fixtures are nouns and build real objects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def real_cta_folder() -> Path:
    """The real chest CTA crop, kept beside the repository (``../shared/data/real-cta``).

    ``PELABELUP_REAL_CTA`` overrides the location.
    """
    override = os.environ.get("PELABELUP_REAL_CTA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data" / "real-cta"


@pytest.fixture(scope="session")
def real_cta_dir() -> Path:
    folder = real_cta_folder()
    if not (folder / "cta_crop.nii.gz").is_file() or not (folder / "pulmonary_artery.nii.gz").is_file():
        pytest.skip(f"real CTA crop not found in {folder} (expected cta_crop.nii.gz and pulmonary_artery.nii.gz)")
    return folder
