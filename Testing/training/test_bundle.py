"""``python -m training.bundle``: a trained model folder becomes a bundled one, checked, portable and atomic, and
every refusal leaves the destination byte for byte as it was. Real model folders (a tiny slice classifier) in
``tmp_path`` destinations, never the repository's ``Resources/Models``; the CLI as a real child process."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.folder import load_model, save_model_folder
from PELabelUpLib.models.networks import build_network
from training import bundle as bundle_module
from training.bundle import bundle_model
from training.engine.config import portable_config

REPO = Path(__file__).resolve().parents[2]
NAME = "pelabelup-classifier"
SPEC = {"name": "SliceClassifier", "kwargs": {"in_channels": 4, "widths": [2, 2, 2, 2]}}


def a_model(folder: Path, version: str = "1.0.0", *, seed: int = 0, **extra: Any) -> Path:
    """A trained-style model folder: tiny real network, metadata as the trainers write it (plus ``extra``)."""
    torch.manual_seed(seed)
    save_model_folder(folder, build_network(SPEC), {
        "name": NAME, "version": version, "task": "classifier", "network": SPEC, "preprocessing": {"size_px": 32},
        "training": {"cohort": "cohort-train", "seed": seed}, "changelog": [f"{version}: trained (seed {seed})"]}
        | extra)
    return folder


def tree_bytes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) and its sha256: what "untouched" is compared on."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def bundled(dest: Path) -> dict[str, Any]:
    return json.loads((dest / NAME / "metadata.json").read_text())


@pytest.fixture
def a_bundle(tmp_path: Path) -> Path:
    """A destination holding version 1.0.0 of the model, bundled by the tool itself."""
    dest = tmp_path / "Models"
    bundle_model(a_model(tmp_path / "v1"), dest=dest, changelog="first bundled classifier")
    return dest


def test_a_fresh_model_is_bundled_and_loads(tmp_path: Path) -> None:
    source = a_model(tmp_path / "run" / NAME)
    source_before = tree_bytes(source)
    report = bundle_model(source, dest=tmp_path / "Models", changelog="first bundled classifier")

    assert (report.name, report.old_version, report.new_version) == (NAME, None, "1.0.0")
    assert sorted(p.name for p in (tmp_path / "Models").iterdir()) == [NAME]  # no temporary folder left
    network, metadata = load_model(tmp_path / "Models" / NAME)  # sha256-checked
    assert metadata["sha256"] == json.loads((source / "metadata.json").read_text())["sha256"]
    assert metadata["changelog"] == ["1.0.0: first bundled classifier", "1.0.0: trained (seed 0)"]
    assert report.size == report.total == sum(p.stat().st_size for p in (tmp_path / "Models" / NAME).iterdir())
    assert "None -> " not in report.summary() and "(none) -> 1.0.0" in report.summary()
    assert tree_bytes(source) == source_before


def test_a_new_version_keeps_and_extends_the_changelog(a_bundle: Path, tmp_path: Path) -> None:
    report = bundle_model(a_model(tmp_path / "v2", "1.1.0", seed=1), dest=a_bundle,
                          changelog="1.1.0: retrained on a larger cohort",
                          cohort_description="pelabelup synth --n 96 --seed 5")

    assert (report.old_version, report.new_version) == ("1.0.0", "1.1.0")
    metadata = bundled(a_bundle)
    assert metadata["version"] == "1.1.0"
    assert metadata["changelog"] == ["1.1.0: retrained on a larger cohort", "1.1.0: trained (seed 1)",
                                     "1.0.0: first bundled classifier", "1.0.0: trained (seed 0)"]
    assert metadata["training"]["cohort"] == {"name": "cohort-train", "description": "pelabelup synth --n 96 --seed 5"}
    assert sorted(p.name for p in a_bundle.iterdir()) == [NAME]  # the old bundle left aside is gone


def test_absolute_paths_are_cut_to_their_last_component_at_any_depth(tmp_path: Path) -> None:
    runs = str(tmp_path / "runs" / "run-7")
    source = a_model(tmp_path / "run", training={
        "cohort": {"names": ["/data/cohorts/cohort-train", "cohort-train2"], "description": "synth --seed 1"},
        "init_weights": {"path": "/home/someone/models/pelabelup-arteries/", "version": "1.0.0"},
        "runs": [runs, "relative/stays"], "windows": "C:\\Users\\someone\\cache", "optimizer": "AdamW lr 0.002"})
    bundle_model(source, dest=tmp_path / "Models", changelog="portable")

    training = bundled(tmp_path / "Models")["training"]
    assert training == {
        "cohort": {"names": ["cohort-train", "cohort-train2"], "description": "synth --seed 1"},
        "init_weights": {"path": "pelabelup-arteries", "version": "1.0.0"},
        "runs": ["run-7", "relative/stays"], "windows": "cache", "optimizer": "AdamW lr 0.002"}
    assert str(tmp_path) not in (tmp_path / "Models" / NAME / "metadata.json").read_text()


def test_portable_config_still_cuts_only_the_named_keys_by_default() -> None:
    config = {"cohort": "data/cohort-train", "out": "/runs/a", "nested": {"p": "/x/y"}, "n": 3}
    assert portable_config(config, ["cohort"]) == {"cohort": "cohort-train", "out": "/runs/a",
                                                  "nested": {"p": "/x/y"}, "n": 3}
    assert portable_config(config, absolute_paths=True) == {"cohort": "data/cohort-train", "out": "a",
                                                           "nested": {"p": "y"}, "n": 3}


def test_over_the_budget_is_refused_and_nothing_changes(a_bundle: Path, tmp_path: Path) -> None:
    before = tree_bytes(a_bundle)
    other = a_model(tmp_path / "other", "1.1.0", seed=1)
    size = (a_bundle / NAME / "model.pt").stat().st_size
    with pytest.raises(ValueError, match=r"over the budget of .* MB; nothing changed"):
        bundle_model(other, dest=a_bundle, changelog="too big", budget_mb=size / 1e6)
    assert tree_bytes(a_bundle) == before

    shutil.copytree(a_bundle / NAME, a_bundle / "pelabelup-arteries")  # the other bundled models count too
    report = bundle_model(other, dest=a_bundle, changelog="fits", budget_mb=3 * size / 1e6, dry_run=True)
    with pytest.raises(ValueError, match="budget"):
        bundle_model(other, dest=a_bundle, changelog="fits", budget_mb=(report.total - 1) / 1e6)


def test_the_same_version_with_other_weights_is_refused(a_bundle: Path, tmp_path: Path) -> None:
    before = tree_bytes(a_bundle)
    with pytest.raises(InputError, match=r"version 1\.0\.0 .* bundled already .* a new model needs a new version"):
        bundle_model(a_model(tmp_path / "retrained", "1.0.0", seed=3), dest=a_bundle, changelog="sneaky")
    assert tree_bytes(a_bundle) == before

    bundle_model(tmp_path / "v1", dest=a_bundle, changelog="same weights, better words")  # the same weights may
    assert bundled(a_bundle)["changelog"][0] == "1.0.0: same weights, better words"


@pytest.mark.parametrize("damage", ["tampered weights", "no metadata", "name is a path"])
def test_a_damaged_source_is_refused(damage: str, a_bundle: Path, tmp_path: Path) -> None:
    source = a_model(tmp_path / "v2", "1.1.0", seed=1)
    if damage == "tampered weights":
        data = bytearray((source / "model.pt").read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte
        (source / "model.pt").write_bytes(bytes(data))
    elif damage == "no metadata":
        (source / "metadata.json").unlink()
    else:
        metadata = json.loads((source / "metadata.json").read_text())
        (source / "metadata.json").write_text(json.dumps(metadata | {"name": "../escape"}))
    before = tree_bytes(a_bundle)
    with pytest.raises(InputError, match=re.escape(str(source))):
        bundle_model(source, dest=a_bundle, changelog="damaged")
    assert tree_bytes(a_bundle) == before


def test_a_dry_run_writes_nothing(a_bundle: Path, tmp_path: Path) -> None:
    before = tree_bytes(a_bundle)
    source = a_model(tmp_path / "v2", "1.1.0", seed=1)
    report = bundle_model(source, dest=a_bundle, changelog="not yet", dry_run=True)
    assert (report.old_version, report.new_version, report.dry_run) == ("1.0.0", "1.1.0", True)
    assert "would bundle" in report.summary() and "nothing written" in report.summary()
    assert tree_bytes(a_bundle) == before
    bundle_model(source, dest=tmp_path / "nowhere", changelog="not yet", dry_run=True)
    assert not (tmp_path / "nowhere").exists()


def test_a_failed_copy_leaves_the_old_bundle(a_bundle: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    before = tree_bytes(a_bundle)

    def copy_then_crash(src: Path, dst: Path) -> None:
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module.shutil, "copyfile", copy_then_crash)
    with pytest.raises(OSError, match="disk full"):
        bundle_model(a_model(tmp_path / "v2", "1.1.0", seed=1), dest=a_bundle, changelog="crash")
    assert tree_bytes(a_bundle) == before


def test_an_interrupted_swap_is_put_right_by_the_next_run(a_bundle: Path, tmp_path: Path) -> None:
    (a_bundle / NAME).replace(a_bundle / f".{NAME}.previous")  # stopped between the two renames
    bundle_model(a_model(tmp_path / "v2", "1.1.0", seed=1), dest=a_bundle, changelog="after a crash")
    assert bundled(a_bundle)["changelog"][2:] == ["1.0.0: first bundled classifier", "1.0.0: trained (seed 0)"]
    assert sorted(p.name for p in a_bundle.iterdir()) == [NAME]


def bundle_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "training.bundle", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_cli_bundles_and_refuses_in_one_line(a_bundle: Path, tmp_path: Path) -> None:
    source = a_model(tmp_path / "v2", "1.1.0", seed=1)
    done = bundle_cli("--model", str(source), "--dest", str(a_bundle), "--changelog", "from the CLI")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"bundled {NAME}: 1.0.0 -> 1.1.0" in done.stdout and "of a 25 MB budget" in done.stdout
    assert bundled(a_bundle)["changelog"][0] == "1.1.0: from the CLI"

    before = tree_bytes(a_bundle)
    tampered = a_model(tmp_path / "v3", "1.2.0", seed=2)
    (tampered / "model.pt").write_bytes(b"not weights")
    failed = bundle_cli("--model", str(tampered), "--dest", str(a_bundle), "--changelog", "tampered")
    assert failed.returncode == 2
    assert len(failed.stderr.strip().splitlines()) == 1 and str(tampered) in failed.stderr
    assert "sha256 mismatch" in failed.stderr
    assert tree_bytes(a_bundle) == before
