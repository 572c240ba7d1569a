"""Case ids that could escape the datastore, or alias another case, are refused with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from PELabelUpLib.datastore import MAX_CASE_ID_LENGTH, check_case_id
from PELabelUpLib.errors import InputError

REVIEW = {"reviewer": "r", "study_label": False, "label_decision": "confirmed", "model_versions": {}}

ESCAPING = {
    "parent": ("..", "relative folder"),
    "current": (".", "relative folder"),
    "parent-prefix": ("../outside", "path separator"),
    "nested": ("a/b", "path separator"),
    "backslash": ("a\\..\\b", "path separator"),
    "absolute": ("/etc/passwd", "path separator"),
    "windows-absolute": ("C:\\evil", "path separator"),
    "drive-relative": ("C:evil", "not allowed"),
    "empty": ("", "empty"),
    "nul": ("case\x00id", "NUL"),
    "too-long": ("x" * (MAX_CASE_ID_LENGTH + 1), "too long"),
    "hidden": (".staging", "start with a letter or digit"),
    "dots-only": ("...", "start with a letter or digit"),
    "trailing-dot": ("case.", "end with"),
    "space": ("case 1", "not allowed"),
    "newline": ("case\n1", "not allowed"),
    "unicode": ("caśe", "not allowed"),
    "tilde": ("~root", "not allowed"),
    "device": ("NUL.txt", "reserved"),
    "device-upper": ("com1", "reserved"),
    "not-a-string": (42, "must be a string"),
}


@pytest.mark.parametrize(("case_id", "reason"), ESCAPING.values(), ids=ESCAPING.keys())
def test_an_escaping_case_id_is_refused_in_one_line(a_datastore, a_volume, a_final_mask, case_id, reason):
    with pytest.raises(InputError, match=reason) as caught:
        a_datastore.export(case_id, a_volume, a_final_mask, **REVIEW)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("case id ")
    assert [p.name for p in a_datastore.root.iterdir() if not p.name.startswith("datastore.sqlite")] == []
    assert a_datastore.case_ids() == set()


@pytest.mark.parametrize("case_id", ["1.2.840.113619.2.55.3.604688119", "0a1b2c3d4e5f", "phantom-0007",
                                     "Case_A.v2", "x" * MAX_CASE_ID_LENGTH, "CONSOLE", "a..b"])
def test_plain_case_ids_are_accepted(tmp_path, case_id):
    assert check_case_id(case_id, tmp_path) == case_id


def test_a_case_id_resolving_outside_through_a_link_is_refused(a_datastore, a_volume, a_final_mask, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (a_datastore.root / "cases").mkdir()
    (a_datastore.root / "cases" / "linked").symlink_to(outside)
    with pytest.raises(InputError, match="resolves outside"):
        a_datastore.export("linked", a_volume, a_final_mask, **REVIEW)
    assert list(outside.iterdir()) == []
    a_datastore.clean()  # the link is reported, never followed nor removed
    assert (a_datastore.root / "cases" / "linked").is_symlink() and list(outside.iterdir()) == []
    assert a_datastore.verify() == ["cases/linked: not a plain folder (a link or a file)"]


def test_case_ids_differing_only_in_letter_case_are_refused(a_datastore, a_volume, a_final_mask):
    a_datastore.export("Case-7", a_volume, a_final_mask, **REVIEW)
    with pytest.raises(InputError, match="differs only in letter case from the stored case 'Case-7'"):
        a_datastore.export("case-7", a_volume, a_final_mask, **REVIEW)
    assert [r.case_id for r in a_datastore.cases()] == ["Case-7"]
    assert a_datastore.verify() == []


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=140))
def test_any_accepted_case_id_is_one_folder_inside_the_cases_folder(case_id):
    root = Path("/datastore-root")
    try:
        check_case_id(case_id, root)
        refusal = None
    except InputError as error:
        refusal = str(error)
    if refusal is not None:
        assert "\n" not in refusal and refusal.startswith("case id ")
        return
    target = Path(os.path.normpath(root / "cases" / case_id))
    assert target.parent == root / "cases" and target.name == case_id
