"""A process killed (SIGKILL) in the middle of an export leaves no partial case and no row.

The worker process pauses at a named export stage (the datastore's ``on_stage`` hook), signals it with a file,
and is killed there: deterministic, whatever the machine's speed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from datastore_helpers import ct_volume, signed_mask

from PELabelUpLib.datastore import Datastore
from PELabelUpLib.io import read_label_file

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")

REVIEW = {"reviewer": "r", "study_label": True, "label_decision": "confirmed", "model_versions": {}}


def wait_for(path: Path, process, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"worker ended early ({process.returncode}): {process.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"worker did not reach {path.name} in {timeout_s} s")
        time.sleep(0.02)


def raw_rows(root: Path) -> list[tuple[str, int]]:
    """The index rows, read without opening a Datastore (which would clean up first)."""
    with sqlite3.connect(root / "datastore.sqlite") as connection:
        return connection.execute("SELECT case_id, version FROM exports ORDER BY case_id, version").fetchall()


@pytest.mark.parametrize("stage", ["staged", "locked", "renamed", "inserted"])
def test_a_kill_mid_export_leaves_no_partial_case_and_no_row(tmp_path, start_worker, stage):
    root = tmp_path / "datastore"
    store = Datastore(root)
    first_mask = signed_mask(ct_volume(0).geometry.shape_zyx, writer=9, export=0)
    v1 = store.export("case-1", ct_volume(0), first_mask, **REVIEW)

    paused = tmp_path / "paused"
    worker = start_worker({"root": str(root), "writer": 0, "exports": [["case-1", 1, 0]],
                           "pause_at": stage, "paused": str(paused)})
    wait_for(paused, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL

    assert raw_rows(root) == [("case-1", 1)]  # the killed export's row never became visible
    left_over = {p.name for p in (root / "cases" / "case-1").iterdir()}
    assert left_over == ({"v1", "v2"} if stage in {"renamed", "inserted"} else {"v1"})  # renamed, not indexed
    assert any((root / ".staging").iterdir())  # the killed process's staging folder is still there

    reopened = Datastore(root)  # opening cleans what the dead process left
    assert reopened.verify() == []
    assert list((root / ".staging").iterdir()) == []
    assert {p.name for p in (root / "cases" / "case-1").iterdir()} == {"v1"}
    assert len(list((root / "images").rglob("*.nii.gz"))) == 1  # only case-1's first image
    [current] = reopened.cases()
    assert current == v1
    np.testing.assert_array_equal(read_label_file(current.final_mask_path)[0], first_mask)

    v2 = reopened.export("case-1", ct_volume(1), first_mask, **REVIEW)  # the next export takes v2 cleanly
    assert [r.version for r in reopened.history("case-1")] == [1, 2] and v2.version == 2
    assert reopened.verify() == []


def test_a_live_export_in_another_process_is_never_cleaned(tmp_path, start_worker):
    root = tmp_path / "datastore"
    Datastore(root)
    paused = tmp_path / "paused"
    worker = start_worker({"root": str(root), "writer": 0, "exports": [["case-1", 0, 0]],
                           "pause_at": "staged", "paused": str(paused)})
    wait_for(paused, worker)
    staged = sorted(p.name for p in (root / ".staging").iterdir())
    assert len(staged) == 2  # the worker's folder and its lock file

    report = Datastore(root).clean()  # another session opens the datastore meanwhile
    assert not report.removed_anything
    assert sorted(p.name for p in (root / ".staging").iterdir()) == staged

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    report = Datastore(root, clean_on_open=False).clean()
    assert report.staging == [staged[0]]
    assert list((root / ".staging").iterdir()) == []
