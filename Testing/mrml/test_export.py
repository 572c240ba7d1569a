"""A correction made in the scene reaches the training datastore exactly, with the analysis's original masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mrml_helpers import AnalysisFolder

from PELabelUpLib.datastore import Datastore
from PELabelUpLib.io import read_label_file
from PELabelUpLib.mrml import PE_PSEUDOMASK, SlicerLogics, corrected_mask, load_analysis, set_segment_mask
from PELabelUpLib.mrml.export import export_review

slicer = pytest.importorskip("slicer")


def test_corrected_pseudomask_is_exported_voxel_for_voxel(a_scene: SlicerLogics, an_analysis_folder: AnalysisFolder,
                                                          tmp_path: Path) -> None:
    review = load_analysis(a_scene, an_analysis_folder.folder, focus=False)
    missed = np.zeros(an_analysis_folder.pseudomask.shape, bool)
    missed[8:10, 12:16, 20:26] = True  # the radiologist paints a clot the model missed ...
    false_positive = an_analysis_folder.segmentation.astype(bool)  # ... and erases one it should not have found
    set_segment_mask(review.segmentation, PE_PSEUDOMASK.segment_id, missed, review.ct, mode="paint")
    set_segment_mask(review.segmentation, PE_PSEUDOMASK.segment_id, false_positive, review.ct, mode="erase")
    expected = (an_analysis_folder.pseudomask.astype(bool) | missed) & ~false_positive
    np.testing.assert_array_equal(corrected_mask(review.segmentation, PE_PSEUDOMASK.segment_id, review.ct), expected)

    store = Datastore(tmp_path / "store")
    record = export_review(store, review, "case-001", reviewer="dr-a", study_label=True, label_decision="confirmed")
    final, geometry = read_label_file(record.final_mask_path)
    np.testing.assert_array_equal(final != 0, expected)
    assert geometry.same_grid(an_analysis_folder.ct.geometry, tol=1e-3)
    assert set(record.original_masks) == {"pseudomask", "segmentation", "arteries"}
    original, _ = read_label_file(record.original_masks["pseudomask"])
    np.testing.assert_array_equal(original, an_analysis_folder.pseudomask)
    assert record.model_versions == {"models": an_analysis_folder.record["models"]}
    image, _ = read_label_file(record.image_path)
    np.testing.assert_array_equal(image, an_analysis_folder.ct.hu)
