"""The one source of segment terminology, ``PELabelUpLib.terminology``: its SNOMED CT codes, Slicer's entry strings,
and the analysis file and the Slicer review both taking their segments from it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from PELabelUpLib import terminology
from PELabelUpLib.analysis.segments import ANALYSIS_SEGMENTS, SOURCE_TAG, analysis_segments
from PELabelUpLib.slicer_process import PACKAGE_ROOT
from PELabelUpLib.terminology import (
    ANATOMICAL_STRUCTURE,
    EMBOLUS,
    MORPHOLOGICALLY_ALTERED,
    NO_CODE,
    PE_PSEUDOMASK,
    PE_SEGMENTER,
    PULMONARY_ARTERIES,
    PULMONARY_ARTERY,
    parse_terminology,
    terminology_entry,
)

EMBOLUS_ENTRY = ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure"
                 "~SCT^55584005^Embolus~^^~Anatomic codes - DICOM master list~SCT^81040000^Pulmonary artery~^^")
ARTERY_ENTRY = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure"
                "~SCT^81040000^Pulmonary artery~^^~~^^~^^")


def test_the_codes_are_the_snomed_ct_codes_of_dicom_and_slicer():
    assert EMBOLUS == ("SCT", "55584005", "Embolus")
    assert PULMONARY_ARTERY == ("SCT", "81040000", "Pulmonary artery")
    assert MORPHOLOGICALLY_ALTERED == ("SCT", "49755003", "Morphologically Altered Structure")
    assert ANATOMICAL_STRUCTURE == ("SCT", "123037004", "Anatomical Structure")


@pytest.mark.parametrize(("spec", "segment_id", "name", "color", "entry", "fill_opacity_2d"), [
    (PE_PSEUDOMASK, "pe_pseudomask", "PE pseudo-mask", (0.0, 0.9, 1.0), EMBOLUS_ENTRY, 0.35),
    (PE_SEGMENTER, "pe_segmenter", "PE segmenter", (0.35, 1.0, 0.25), EMBOLUS_ENTRY, 0.35),
    (PULMONARY_ARTERIES, "pulmonary_arteries", "Pulmonary arteries", (0.85, 0.55, 0.95), ARTERY_ENTRY, 0.0),
], ids=["pseudomask", "segmenter", "arteries"])
def test_each_segment_has_its_id_name_colour_and_entry(spec, segment_id, name, color, entry, fill_opacity_2d):
    assert (spec.segment_id, spec.name, spec.color, spec.terminology) == (segment_id, name, color, entry)
    assert spec.fill_opacity_2d == fill_opacity_2d


def test_entries_read_back_into_their_codes():
    assert parse_terminology(EMBOLUS_ENTRY) == {"category": MORPHOLOGICALLY_ALTERED, "type": EMBOLUS,
                                                "type_modifier": NO_CODE, "region": PULMONARY_ARTERY,
                                                "region_modifier": NO_CODE}
    assert parse_terminology(terminology_entry(ANATOMICAL_STRUCTURE, PULMONARY_ARTERY))["region"] == NO_CODE


@pytest.mark.parametrize(("entry", "message"), [
    ("a~b", "7 '~'-separated fields, got 2"),
    (EMBOLUS_ENTRY.replace("SCT^55584005^Embolus", "SCT^55584005"), "'scheme^value^meaning', got 'SCT^55584005'"),
])
def test_malformed_entries_are_refused_naming_the_fault(entry, message):
    with pytest.raises(ValueError, match=message.replace("^", r"\^")):
        parse_terminology(entry)


def test_the_analysis_file_uses_the_shared_segments_in_file_order():
    mask = np.zeros((2, 3, 4), np.uint8)
    mask[1, 2, 3] = 1
    segments = analysis_segments(mask, mask, mask, segmentation_source="segmenter")
    assert ANALYSIS_SEGMENTS == (PE_PSEUDOMASK, PE_SEGMENTER, PULMONARY_ARTERIES)
    for segment, spec in zip(segments, ANALYSIS_SEGMENTS, strict=True):
        assert (segment.segment_id, segment.name, segment.color, segment.terminology) == \
            (spec.segment_id, spec.name, spec.color, spec.terminology)
    assert [s.tags[SOURCE_TAG] for s in segments] == ["pseudomask", "segmenter", "artery model"]


def test_the_review_takes_the_same_objects():
    pytest.importorskip("slicer")
    from PELabelUpLib import mrml

    for name in ("PE_PSEUDOMASK", "PE_SEGMENTER", "PULMONARY_ARTERIES", "SegmentSpec"):
        assert getattr(mrml, name) is getattr(terminology, name), name


def test_the_module_needs_no_slicer_vtk_or_numpy():
    source = ast.parse(Path(terminology.__file__).read_text())
    imported = {n.module for n in ast.walk(source) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(source) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"__future__", "dataclasses"}
    code = ("import sys, PELabelUpLib.terminology, PELabelUpLib.analysis.segments\n"
            "print(sorted(m for m in ('slicer', 'vtk', 'qt', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                          cwd=PACKAGE_ROOT)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
