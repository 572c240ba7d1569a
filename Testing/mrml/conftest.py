"""Fixtures of the MRML tests: a real headless scene with Slicer's module logics, and an analysis folder."""

from __future__ import annotations

from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

from mrml_helpers import AnalysisFolder, oblique_geometry, write_analysis_folder  # noqa: E402

from PELabelUpLib.mrml import SlicerLogics, create_headless_scene  # noqa: E402

VIEW_SIZE_PX = (96, 96)


@pytest.fixture
def a_scene() -> SlicerLogics:
    """A real MRML scene with Slicer's application logic, module logics and three small slice views."""
    return create_headless_scene(view_size_px=VIEW_SIZE_PX)


@pytest.fixture
def an_analysis_folder(tmp_path: Path) -> AnalysisFolder:
    """An analysis folder (with a segmenter mask) around an oblique, anisotropic CT."""
    return write_analysis_folder(tmp_path, oblique_geometry())
