"""Several processes exporting into one datastore at once lose nothing: every export is indexed once, with
its own version and its own files."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter

import numpy as np
from datastore_helpers import ct_volume, signed_mask

from PELabelUpLib.datastore import Datastore, image_hash
from PELabelUpLib.io import read_label_file

N_WRITERS = 3
EXPORTS_PER_WRITER = 5


def plan(writer: int) -> list[list]:
    """Exports 0, 2, 4 go to the case every writer shares (same image), 1 and 3 to the writer's own case."""
    return [["shared", 0, n] if n % 2 == 0 else [f"own-{writer}", 10 + writer, n] for n in range(EXPORTS_PER_WRITER)]


def test_concurrent_processes_lose_no_export(tmp_path, start_worker):
    root = tmp_path / "datastore"  # not created yet: the workers create it together
    go = tmp_path / "go"
    workers = [start_worker({"root": str(root), "writer": w, "exports": plan(w), "ready": str(tmp_path / f"ready{w}"),
                             "go": str(go)}) for w in range(N_WRITERS)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{w}").exists() for w in range(N_WRITERS)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in workers), "workers did not start"
        time.sleep(0.02)
    go.write_text("go")  # all start exporting together
    reported = []
    for process in workers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        reported += [json.loads(line) for line in out.splitlines()]

    assert len(reported) == N_WRITERS * EXPORTS_PER_WRITER
    store = Datastore(root)
    assert store.verify() == []
    with sqlite3.connect(root / "datastore.sqlite") as connection:
        rows = connection.execute("SELECT case_id, version, model_versions_json FROM exports").fetchall()
    assert len(rows) == N_WRITERS * EXPORTS_PER_WRITER
    assert sorted((r["case_id"], r["version"]) for r in reported) == sorted((c, v) for c, v, _ in rows)
    per_case = Counter(c for c, _, _ in rows)
    for case_id, count in per_case.items():  # versions 1..n, each once
        assert sorted(r.version for r in store.history(case_id)) == list(range(1, count + 1))
    assert per_case == Counter({"shared": 3 * N_WRITERS} | {f"own-{w}": 2 for w in range(N_WRITERS)})

    # each version holds exactly what its writer exported (no files swapped between concurrent exports)
    by_version = {(r["case_id"], r["version"]): r for r in reported}
    for case_id in per_case:
        for record in store.history(case_id):
            who = by_version[(case_id, record.version)]
            assert record.model_versions == {"writer": who["writer"], "export": who["export"]}
            expected = signed_mask(record.image_geometry.shape_zyx, who["writer"], who["export"])
            np.testing.assert_array_equal(read_label_file(record.final_mask_path)[0], expected)
    hashes = {image_hash(ct_volume(seed)) for seed in [0, *(10 + w for w in range(N_WRITERS))]}
    assert {r.image_hash for r in store.cases()} == hashes
    assert len(list((root / "images").rglob("*.nii.gz"))) == len(hashes)  # the shared image stored once
