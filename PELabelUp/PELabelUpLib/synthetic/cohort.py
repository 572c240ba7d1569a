"""Cohorts of synthetic and hybrid CTPA cases, written as NIfTI folders or in the RSPECT layout.

Layouts written under ``out_dir``:

``nifti``
    ``<case_id>/ct.nii.gz`` (int16 HU), ``emboli.nii.gz`` (uint8 label map), ``arteries.nii.gz``,
    ``lungs.nii.gz`` (uint8), ``case.json`` (emboli, slice and study labels, generator parameters), and
    ``cohort.csv`` (one row a case).
``rspect``
    ``train/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` and ``train.csv`` as RSNA RSPECT
    lays them out (12-character lowercase hex identifiers), plus the ground truth that RSPECT lacks:
    ``masks/<StudyInstanceUID>/{emboli,arteries,lungs}.nii.gz`` and ``case.json``, and ``cohort.csv``.

Every case is written into a temporary folder and renamed into place, so an interrupted run leaves only
whole cases; a rerun into the same folder keeps the finished cases and makes the missing ones.

A case is a deterministic function of its seed *and of the generator's code*: ``case.json`` records
``generator.version`` (:data:`GENERATOR_VERSION`, raised whenever a change of the code changes what a seed
makes), and a rerun refuses a folder whose cases another version made, so one cohort never mixes two. Cases
written before the version was recorded have none and are refused the same way.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import io as ctio
from ..errors import InputError
from .types import Case

log = logging.getLogger(__name__)

#: Raised whenever a change of the generators changes the case a seed makes (anatomy, arteries, emboli, noise).
#: Version 2 is the first one recorded; cases without a version came from earlier code.
GENERATOR_VERSION = 2

Layout = Literal["nifti", "rspect"]
LAYOUTS: tuple[Layout, ...] = ("nifti", "rspect")
COHORT_CSV_COLUMNS = (
    "case_id", "kind", "seed", "positive", "n_emboli", "study_uid", "size_x", "size_y", "size_z",
    "spacing_x_mm", "spacing_y_mm", "spacing_z_mm", "oblique", "path",
)


@dataclass(frozen=True)
class CaseRequest:
    """What one worker makes: a phantom (``kind="phantom"``) or a hybrid real-anatomy case."""

    index: int
    seed: int
    kind: Literal["phantom", "hybrid"]
    overrides: tuple[tuple[str, Any], ...] = ()
    real_cta_dir: str | None = None


def case_seeds(seed: int, n_cases: int) -> list[int]:
    """Per-case seeds derived from the cohort seed (independent streams, stable for a given seed)."""
    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n_cases, dtype=np.uint32)]


def make_case(request: CaseRequest) -> Case:
    """Build the case a request names (runs in a worker process)."""
    if request.kind == "hybrid":
        from .hybrid import make_hybrid_case

        if request.real_cta_dir is None:
            raise ValueError("a hybrid case needs real_cta_dir (the folder with cta_crop.nii.gz)")
        folder = Path(request.real_cta_dir)
        return make_hybrid_case(folder / "cta_crop.nii.gz", folder / "pulmonary_artery.nii.gz", request.seed,
                                **dict(request.overrides))
    from .phantom import generate_phantom

    return generate_phantom(request.seed, **dict(request.overrides))


def case_record(case: Case) -> dict[str, Any]:
    """The JSON-serialisable ground truth of a case (everything but the arrays)."""
    g = case.ct.geometry
    return {
        "case_id": case.case_id,
        "positive": case.positive,
        "study_labels": {k: int(v) for k, v in case.study_labels.items()},
        "slice_labels": [int(v) for v in case.slice_labels],
        "emboli": [asdict(e) for e in case.emboli_list],
        "geometry": {"size": list(g.size), "spacing_mm": list(g.spacing_mm), "origin_lps_mm": list(g.origin_mm),
                     "direction": list(g.direction)},
        "params": case.params,
        "generator": {"name": "PELabelUp synthetic CTPA", "version": GENERATOR_VERSION},
    }


def check_generator_version(record: dict[str, Any], record_path: Path) -> None:
    """Refuse a finished case that another generator version made (a rerun must not mix versions)."""
    version = (record.get("generator") or {}).get("version")
    if version != GENERATOR_VERSION:
        made_by = "an earlier generator (no version recorded)" if version is None else f"generator version {version}"
        raise InputError(record_path, f"made by {made_by}, this is version {GENERATOR_VERSION}: "
                                      "the same seed now makes a different case; write the cohort to a new folder")


def check_same_options(record: dict[str, Any], record_path: Path, request: CaseRequest) -> None:
    """Refuse a finished phantom that other options made (a rerun must not mix, say, grids or contrast phases)."""
    if request.kind != "phantom":
        return
    from .phantom import recorded_overrides

    wanted = recorded_overrides(dict(request.overrides))
    made = recorded_overrides((record.get("params") or {}).get("overrides") or {})
    if made != wanted:
        raise InputError(record_path, f"made with the options {made or 'as drawn'}, this run asks for "
                                      f"{wanted or 'as drawn'}: write the cohort to a new folder")


def _write_masks(case: Case, folder: Path) -> None:
    g = case.ct.geometry
    ctio.write_volume(case.emboli.astype(np.uint8), folder / "emboli.nii.gz", g)
    ctio.write_volume(case.arteries.astype(np.uint8), folder / "arteries.nii.gz", g)
    ctio.write_volume(case.lungs.astype(np.uint8), folder / "lungs.nii.gz", g)


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder into place (atomic on one file system). A folder already there is what
    an interrupted run left of this case (a finished case is never remade), so it is replaced."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    tmp.replace(final)


def write_case_nifti(case: Case, out_dir: Path) -> Path:
    final = out_dir / case.case_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{case.case_id}.", dir=out_dir))
    try:
        ctio.write_volume(case.ct, tmp / "ct.nii.gz")
        _write_masks(case, tmp)
        (tmp / "case.json").write_text(json.dumps(case_record(case), indent=1))
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_case_rspect(case: Case, out_dir: Path, seed: int) -> tuple[Path, list[dict[str, Any]], str]:
    """Write one study in the RSPECT layout; returns its mask folder, its train.csv rows and its study id."""
    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{case.case_id}.", dir=out_dir))
    try:
        rows = ctio.write_rspect_study(tmp, case.ct, case.slice_labels, case.study_labels, rng=rng)
        study_uid = str(rows[0]["StudyInstanceUID"])
        masks = tmp / "masks" / study_uid
        masks.mkdir(parents=True)
        _write_masks(case, masks)
        record = case_record(case) | {"study_uid": study_uid, "train_csv_rows": rows}
        (masks / "case.json").write_text(json.dumps(record, indent=1))
        _publish(tmp / "train" / study_uid, out_dir / "train" / study_uid)
        _publish(masks, out_dir / "masks" / study_uid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / "masks" / study_uid, rows, study_uid


def _summary(case: Case, kind: str, seed: int, path: Path, study_uid: str = "") -> dict[str, Any]:
    g = case.ct.geometry
    return {
        "case_id": case.case_id, "kind": kind, "seed": seed, "positive": int(case.positive),
        "n_emboli": len(case.emboli_list), "study_uid": study_uid,
        "size_x": g.size[0], "size_y": g.size[1], "size_z": g.size[2],
        "spacing_x_mm": round(g.spacing_mm[0], 4), "spacing_y_mm": round(g.spacing_mm[1], 4),
        "spacing_z_mm": round(g.spacing_mm[2], 4), "oblique": int(g.is_oblique), "path": str(path),
    }


def build_and_write(request: CaseRequest, out_dir: str, layout: Layout) -> tuple[dict[str, Any], list[dict]]:
    """Worker entry point: make one case and write it. Returns its cohort.csv row and train.csv rows."""
    case = make_case(request)
    out = Path(out_dir)
    if layout == "nifti":
        path = write_case_nifti(case, out)
        return _summary(case, request.kind, request.seed, path.relative_to(out)), []
    path, rows, study_uid = write_case_rspect(case, out, request.seed)
    return _summary(case, request.kind, request.seed, path.relative_to(out), study_uid), rows


def _finished_records(out_dir: Path, layout: Layout, case_ids: Sequence[str]) -> dict[str, tuple[dict, Path]]:
    """Case id -> (record, its path) of the cases among ``case_ids`` that an earlier run finished, each record
    read once: a NIfTI case is its ``<case_id>/case.json``; RSPECT records (``masks/<study>/case.json``, whose
    study has its DICOM folder) are read in one pass, not once per case."""
    if layout == "nifti":
        paths = (out_dir / case_id / "case.json" for case_id in case_ids)
        return {p.parent.name: (json.loads(p.read_text()), p) for p in paths if p.is_file()}
    wanted, found = set(case_ids), {}
    for record_path in sorted((out_dir / "masks").glob("*/case.json")):
        record = json.loads(record_path.read_text())
        if record.get("case_id") in wanted and (out_dir / "train" / str(record.get("study_uid"))).is_dir():
            found[record["case_id"]] = (record, record_path)
    return found


def _summary_from_record(record: dict, request: CaseRequest, out_dir: Path, layout: Layout) -> dict[str, Any]:
    g = record["geometry"]
    direction = np.asarray(g["direction"]).reshape(3, 3)
    oblique = not np.allclose(np.sort(np.abs(direction), axis=0)[:2], 0.0, atol=1e-6)
    path = Path(record["case_id"]) if layout == "nifti" else Path("masks") / record["study_uid"]
    return {
        "case_id": record["case_id"], "kind": request.kind, "seed": request.seed,
        "positive": int(record["positive"]), "n_emboli": len(record["emboli"]),
        "study_uid": record.get("study_uid", ""),
        "size_x": g["size"][0], "size_y": g["size"][1], "size_z": g["size"][2],
        "spacing_x_mm": round(g["spacing_mm"][0], 4), "spacing_y_mm": round(g["spacing_mm"][1], 4),
        "spacing_z_mm": round(g["spacing_mm"][2], 4), "oblique": int(oblique), "path": str(path),
    }


def plan_cohort(n_cases: int, seed: int, *, n_hybrid: int = 0, real_cta_dir: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> list[CaseRequest]:
    """The requests of a cohort: ``n_cases`` phantoms then ``n_hybrid`` hybrid cases, seeds from ``seed``."""
    if n_hybrid < 0:
        raise ValueError(f"n_hybrid must be >= 0, got {n_hybrid}")
    if n_hybrid and real_cta_dir is None:
        raise ValueError("hybrid cases need real_cta_dir (the folder holding cta_crop.nii.gz)")
    seeds = case_seeds(seed, n_cases + n_hybrid)
    frozen = tuple(sorted((overrides or {}).items()))
    requests = [CaseRequest(i, seeds[i], "phantom", frozen) for i in range(n_cases)]
    requests += [CaseRequest(n_cases + i, seeds[n_cases + i], "hybrid", (), str(real_cta_dir))
                 for i in range(n_hybrid)]
    return requests


def generate_cohort(
    out_dir: str | Path,
    requests: Sequence[CaseRequest],
    *,
    layout: Layout = "nifti",
    workers: int | None = None,
    on_case_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Make and write every requested case, in parallel, and the cohort's index files.

    Args:
        out_dir: folder to write into (created; removed again when a failing run created it and finished no
            case); cases an earlier run finished are kept, not remade.
        requests: from :func:`plan_cohort`.
        layout: ``"nifti"`` or ``"rspect"`` (see the module docstring).
        workers: processes; default: all cores. ``1`` runs in this process.
        on_case_done: called with each case's ``cohort.csv`` row as it finishes (progress bars).

    Returns:
        the ``cohort.csv`` rows, in request order.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    with _output_folder(Path(out_dir)) as out:
        return _make_cohort(out, requests, layout, max(1, workers or os.cpu_count() or 1), on_case_done)


@contextmanager
def _output_folder(out: Path) -> Iterator[Path]:
    """``out``, created (with its parents) for the block; the folders it created are removed again when the block
    fails and leaves them empty (no case finished), so a refused run leaves nothing behind."""
    created = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        with suppress(OSError):  # stops at the first folder that holds something
            for folder in created:
                folder.rmdir()
        raise


def _make_cohort(out: Path, requests: Sequence[CaseRequest], layout: Layout, workers: int,
                 on_case_done: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    summaries: dict[int, dict[str, Any]] = {}
    train_rows: dict[int, list[dict]] = {}
    todo = []
    finished = _finished_records(out, layout, [_case_id_of(r) for r in requests])
    for request in requests:
        if _case_id_of(request) not in finished:
            todo.append(request)
            continue
        record, record_path = finished[_case_id_of(request)]
        check_generator_version(record, record_path)
        check_same_options(record, record_path, request)
        summaries[request.index] = _summary_from_record(record, request, out, layout)
        train_rows[request.index] = [] if layout == "nifti" else record["train_csv_rows"]
        if on_case_done:
            on_case_done(summaries[request.index])
    if todo:
        log.info("making %d cases with %d worker(s) into %s", len(todo), workers, out)
    if workers == 1 or len(todo) <= 1:
        for request in todo:
            summaries[request.index], train_rows[request.index] = build_and_write(request, str(out), layout)
            if on_case_done:
                on_case_done(summaries[request.index])
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            futures = {pool.submit(build_and_write, r, str(out), layout): r for r in todo}
            for future in as_completed(futures):
                request = futures[future]
                summaries[request.index], train_rows[request.index] = future.result()
                if on_case_done:
                    on_case_done(summaries[request.index])
    ordered = [summaries[r.index] for r in requests]
    _write_csv(out / "cohort.csv", COHORT_CSV_COLUMNS, ordered)
    if layout == "rspect":
        rows = [row for r in requests for row in train_rows[r.index]]
        ctio.write_train_csv(out, rows)
    return ordered


def _case_id_of(request: CaseRequest) -> str:
    # the generators name cases after their seed: "phantom-<seed>" / "hybrid-<seed>"
    return f"{request.kind}-{request.seed:06d}"


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
