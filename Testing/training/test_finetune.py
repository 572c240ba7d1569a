"""``pelabelup finetune``: corrected masks take precedence over pseudo-masks, a new model version is written, and
the base folder is left byte for byte as it was. Real model folders, a real child process through the CLI."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clot_cohort import write_case_masks, write_clot_cohort

from PELabelUpLib.cli.main import build_parser
from PELabelUpLib.cli.main import main as pelabelup
from PELabelUpLib.datastore import Datastore
from PELabelUpLib.io import load_ct, read_label_file
from PELabelUpLib.models.folder import load_model, save_model_folder, sha256_of
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.models.segmenter import SegmenterPreprocessing
from training.finetune import parse_args as finetune_args
from training.segmenter.lineage import next_version, parse_version
from training.segmenter.records import LABEL_SOURCES_CSV
from training.segmenter.train import network_spec

CASES = ("clot-000", "clot-001", "clot-002")
CORRECTED = ("clot-000", "clot-002")  # corrected masks in a folder
STORED = "clot-002"  # ... and exported to a datastore (twice), which comes first


@pytest.fixture(scope="module")
def a_cohort_with_corrections(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three clot cases; pseudo-masks (clot cut short) and territories for all, corrected masks for two."""
    root = tmp_path_factory.mktemp("finetune")
    cohort = write_clot_cohort(root / "cohort", len(CASES), seed=2)
    for case_id in CASES:
        emboli, _ = read_label_file(cohort / case_id / "emboli.nii.gz")
        arteries, _ = read_label_file(cohort / case_id / "arteries.nii.gz")
        short = emboli.copy()
        short[np.flatnonzero(short.any(axis=(1, 2)))[-3:]] = 0
        write_case_masks(root / "predictions", cohort, case_id,
                         {"pseudomask.nii.gz": short, "arteries.nii.gz": arteries})
        if case_id in CORRECTED:
            write_case_masks(root / "corrections", cohort, case_id, {"corrected.nii.gz": emboli})
    store = Datastore(root / "datastore")
    volume = load_ct(cohort / STORED / "ct.nii.gz")
    emboli, _ = read_label_file(cohort / STORED / "emboli.nii.gz")
    arteries, _ = read_label_file(cohort / STORED / "arteries.nii.gz")
    for version, final in enumerate((emboli, np.roll(emboli, 1, axis=0)), start=1):  # v2 is the current one
        store.export(STORED, volume, final, reviewer="dr-a", study_label=True, label_decision="confirmed",
                     model_versions={"segmenter": f"1.0.{version}"}, original_masks={"arteries": arteries})
    store.export("extra-001", volume, emboli, reviewer="dr-b", study_label=True, label_decision="confirmed",
                 model_versions={}, original_masks={"arteries": arteries})  # a study outside the cohort
    return {"root": root, "cohort": cohort, "predictions": root / "predictions", "corrections": root / "corrections",
            "datastore": root / "datastore"}


def a_base_model(folder: Path, *, task: str = "segmenter") -> Path:
    """A bundled-style segmenter folder (version 1.0.0) with a tiny DynUNet."""
    torch.manual_seed(0)
    spec = network_spec([4, 8, 16])
    save_model_folder(folder, build_network(spec), {
        "name": "pelabelup-segmenter", "version": "1.0.0", "task": task, "network": spec,
        "preprocessing": SegmenterPreprocessing(roi_size=(16, 16, 16)).as_metadata(),
        "changelog": ["1.0.0: trained on pseudo-masks of the synthetic cohort"]})
    return folder


def folder_bytes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_finetune_uses_corrections_first_and_writes_a_new_version(a_cohort_with_corrections: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    data = a_cohort_with_corrections
    base = a_base_model(tmp_path / "bundled" / "pelabelup-segmenter")
    base_before = folder_bytes(base)
    base_sha = json.loads((base / "metadata.json").read_text())["sha256"]
    out = tmp_path / "models" / "pelabelup-segmenter-1.1.0"
    command = [sys.executable, "-m", "PELabelUpLib.cli.main", "finetune", "--cohort", str(data["cohort"]),
               "--labels", f"corrected:{data['corrections']}", f"pseudo:{data['predictions']}",
               "--datastore", str(data["datastore"]),
               "--base-model", str(base), "--out", str(out), "--epochs", "1", "--patches-per-epoch", "4",
               "--batch-size", "2", "--val-cases", "0", "--device", "cpu", "--precision", "off", "--threads", "1",
               "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    assert folder_bytes(base) == base_before  # weights and metadata of the base untouched
    assert sha256_of(base / "model.pt") == base_sha
    network, metadata = load_model(out)  # sha256-checked
    assert metadata["name"] == "pelabelup-segmenter" and metadata["version"] == "1.1.0"
    assert metadata["training"]["precision"] == "fp32", "--precision is passed to the trainer"
    assert metadata["parent"] == {"name": "pelabelup-segmenter", "version": "1.0.0", "sha256": base_sha,
                                  "folder": "pelabelup-segmenter"}
    assert metadata["changelog"][0].startswith("1.1.0: fine-tuned from pelabelup-segmenter 1.0.0")
    assert metadata["changelog"][1:] == ["1.0.0: trained on pseudo-masks of the synthetic cohort"]
    assert metadata["network"] == network_spec([4, 8, 16])
    assert metadata["preprocessing"] == SegmenterPreprocessing(roi_size=(16, 16, 16)).as_metadata()
    assert metadata["sha256"] != base_sha

    used = {c["case_id"]: c for c in metadata["training"]["cases"]}
    assert {c["role"] for c in used.values()} == {"train"}
    assert {k: (c["labels"], c["source"]) for k, c in used.items()} == {
        "clot-000": ("corrected", "corrected"), "clot-001": ("pseudo", "pseudo"),
        "clot-002": ("corrected", "datastore"), "extra-001": ("corrected", "datastore")}
    assert used["clot-000"]["label_file"] == f"{data['corrections'].name}/clot-000/corrected.nii.gz"
    assert used["clot-001"]["label_file"] == f"{data['predictions'].name}/clot-001/pseudomask.nii.gz"
    current = Datastore(data["datastore"]).latest(STORED)
    assert current is not None and current.version == 2
    assert used[STORED]["label_file"] == current.final_mask_path.relative_to(data["root"]).as_posix()
    assert metadata["training"]["label_counts"] == {"corrected": 3, "pseudo": 1, "gt": 0}
    assert metadata["training"]["labels"] == ["datastore", "corrected", "pseudo"]
    assert metadata["training"]["datastore"] == {"name": "datastore", "cases": 2}
    assert metadata["training"]["territory"] == "pred"
    with (out.with_name(out.name + ".run") / LABEL_SOURCES_CSV).open() as f:
        assert list(csv.DictReader(f)) == metadata["training"]["cases"]
    base_state = load_model(base)[0].state_dict()
    assert any(not torch.equal(v, base_state[k]) for k, v in network.state_dict().items())  # it trained

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 2 and "exists already" in again.stderr  # a version is never overwritten
    assert folder_bytes(base) == base_before


def test_versions_must_rise_and_the_new_folder_must_lie_outside_the_base(a_cohort_with_corrections: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    data = a_cohort_with_corrections
    base = a_base_model(tmp_path / "base")
    common = ["--cohort", str(data["cohort"]), "--labels", f"pseudo:{data['predictions']}", "--base-model", str(base)]
    assert finetune_args([*common, "--out", str(tmp_path / "new")]).version == "1.1.0"
    assert finetune_args([*common, "--out", str(tmp_path / "new"), "--version", "2.0.0"]).version == "2.0.0"
    for version in ("1.0.0", "0.9.9", "1.1"):
        with pytest.raises(ValueError, match="version"):
            finetune_args([*common, "--out", str(tmp_path / "new"), "--version", version])
    with pytest.raises(ValueError, match="base model folder"):
        finetune_args([*common, "--out", str(base / "v2")])
    assert next_version("1.4.2") == "1.5.0" and parse_version("10.0.1") > parse_version("9.9.9")


def test_training_sources_must_be_named(a_cohort_with_corrections: dict[str, Path], tmp_path: Path) -> None:
    data = a_cohort_with_corrections
    base = a_base_model(tmp_path / "base")
    common = ["--base-model", str(base), "--out", str(tmp_path / "new")]
    with pytest.raises(ValueError, match="nothing to train on"):
        finetune_args(common)
    with pytest.raises(ValueError, match="go together"):
        finetune_args([*common, "--cohort", str(data["cohort"]), "--datastore", str(data["datastore"])])
    only_store = finetune_args([*common, "--datastore", str(data["datastore"])])
    assert only_store.cohort is None and only_store.cache_dir == only_store.run_dir / "cache"
    assert pelabelup(["finetune", *common, "--datastore", str(tmp_path)]) == 2  # not a datastore
    assert not (tmp_path / "datastore.sqlite").exists()  # ... and none was made


def test_the_command_refuses_a_base_that_is_not_a_segmenter(a_cohort_with_corrections: dict[str, Path],
                                                            tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = a_base_model(tmp_path / "arteries", task="artery")
    status = pelabelup(["finetune", "--cohort", str(a_cohort_with_corrections["cohort"]), "--labels", "gt",
                        "--base-model", str(base), "--out", str(tmp_path / "new")])
    assert status == 2
    assert "finetune needs a segmenter" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def finetune_command(*options: str) -> subprocess.CompletedProcess:
    """``pelabelup finetune`` in a child process, as a user runs it (its own child runs the training)."""
    return subprocess.run([sys.executable, "-m", "PELabelUpLib.cli.main", "finetune", *options],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("option", "value"), [("--threads", "-3"), ("--epochs", "-1"), ("--lr", "-1"),
                                               ("--lr", "nan"), ("--batch-size", "0"),
                                               ("--patches-per-epoch", "0"), ("--seed", "-1"), ("--val-cases", "-1")])
def test_bad_numbers_are_refused_before_anything_is_read_or_written(a_cohort_with_corrections: dict[str, Path],
                                                                   tmp_path: Path, option: str, value: str) -> None:
    data = a_cohort_with_corrections
    base = a_base_model(tmp_path / "base")
    out, cache = tmp_path / "new", tmp_path / "cache"
    done = finetune_command("--cohort", str(data["cohort"]), "--labels", f"pseudo:{data['predictions']}",
                            "--base-model", str(base), "--out", str(out), "--cache-dir", str(cache),
                            "--device", "cpu", "--val-cases", "0", option, value)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"pelabelup finetune: error: argument {option}: must ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no model, run or cache folder
    with pytest.raises(SystemExit):  # the training module refuses it as well when run on its own
        finetune_args(["--cohort", str(data["cohort"]), "--labels", "gt", "--base-model", str(base),
                       "--out", str(out), option, value])


@pytest.mark.slow
def test_refusals_of_the_training_child_are_the_commands_one_line(a_cohort_with_corrections: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """What only the training child can check (label folders, the number of cases, the device) is reported in
    ``pelabelup finetune: error: <file>: <reason>`` form, exit status 2, no log line, no run folder."""
    data = a_cohort_with_corrections
    base = a_base_model(tmp_path / "base")
    common = ["--base-model", str(base), "--out", str(tmp_path / "new"), "--cache-dir", str(tmp_path / "cache"),
              "--device", "cpu"]
    refusals = {
        ("--cohort", str(data["cohort"])): f"{data['cohort']}: --cohort and --labels go together",
        ("--cohort", str(data["cohort"]), "--labels", f"pseudo:{tmp_path / 'nowhere'}"):
            f"{tmp_path / 'nowhere'}: pseudo label folder not found",
        ("--cohort", str(data["cohort"]), "--labels", "gt", "--val-cases", "3"):
            "--val-cases must lie in [0, 2] for 3 cases, got 3",
        ("--datastore", str(data["datastore"]), "--out", str(base / "v2")): f"{base / 'v2'}: lies in the base model",
    }
    if not torch.cuda.is_available():
        refusals[("--cohort", str(data["cohort"]), "--labels", "gt", "--device", "cuda")] = (
            "device 'cuda' asked for, but torch sees no CUDA device")
    for options, message in refusals.items():
        done = finetune_command(*common, *options)
        assert done.returncode == 2, done.stderr[-2000:]
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert errors == [done.stderr.splitlines()[-1]], done.stderr[-2000:]
        assert errors[0].startswith(f"pelabelup finetune: error: {message}"), done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "new").exists() and not (tmp_path / "new.run").exists()


def test_every_finetune_option_is_explained() -> None:
    parser = build_parser()
    finetune = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["finetune"]
    unexplained = [a.option_strings[-1] for a in finetune._actions if not a.help]
    assert unexplained == []
