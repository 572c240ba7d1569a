"""The ``pelabelup`` command run as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import write_dicom_series
from PELabelUpLib.volume import CTVolume

PELABELUP = [sys.executable, "-m", "PELabelUpLib.cli.main"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PELABELUP, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("command", [[], ["synth"], ["info"], ["analyze"], ["evaluate"], ["demo"], ["finetune"]])
def test_help_texts(command):
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "usage: pelabelup" in result.stdout


def test_command_line_starts_without_torch():
    """`pelabelup --help`, `info`, `synth`, `evaluate` never pay torch's import; the precision lists are torch-free."""
    code = ("import sys, PELabelUpLib.cli.main\n"
            "from PELabelUpLib.precision import INFERENCE_PRECISIONS, TRAINING_PRECISIONS\n"
            "assert 'torch' not in sys.modules, 'torch loaded'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    analyze_help = run("analyze", "--help").stdout
    finetune_help = run("finetune", "--help").stdout
    assert "{auto,float32}" in analyze_help
    assert "{auto,off,bf16,fp16}" in finetune_help


def test_synth_then_info(tmp_path):
    out = tmp_path / "cohort"
    result = run("synth", "--out", str(out), "--n", "2", "--seed", "4", "--size-xy", "96", "96",
                 "--slices", "40", "--workers", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "2 cases" in result.stdout
    case_dirs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(case_dirs) == 2
    info = run("info", str(case_dirs[0] / "ct.nii.gz"), "--json")
    assert info.returncode == 0, info.stderr
    facts = json.loads(info.stdout)
    assert list(facts["size"]) == [96, 96, 40]
    text = run("info", str(case_dirs[0] / "ct.nii.gz"))
    assert text.returncode == 0
    assert "spacing" in text.stdout
    # a cohort folder made by another generator version is refused in one line, and left as it was
    record_path = case_dirs[0] / "case.json"
    record = json.loads(record_path.read_text())
    record["generator"]["version"] -= 1
    record_path.write_text(json.dumps(record))
    again = run("synth", "--out", str(out), "--n", "3", "--seed", "4", "--size-xy", "96", "96",
                "--slices", "40", "--workers", "1", "--no-progress")
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1
    assert str(record_path) in again.stderr and "generator version" in again.stderr
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2


def test_info_on_missing_file_is_one_clear_line(tmp_path):
    missing = tmp_path / "nowhere.nii.gz"
    result = run("info", str(missing))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(missing) in lines[0]
    assert "Traceback" not in result.stderr


def test_info_on_a_2d_image_names_the_reason(tmp_path):
    picture = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32), np.int16) - 1000), str(picture))
    result = run("info", str(picture))
    assert result.returncode == 2
    assert "2-D" in result.stderr
    assert str(picture) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("as_json", [False, True])
def test_info_on_a_dicom_folder_it_cannot_load_describes_it_and_fails(tmp_path, as_json):
    """The series are still shown on stdout; the reason is the one-line error, exit status 2."""
    volume = CTVolume(hu=np.full((4, 16, 16), -1000, np.int16), geometry=Geometry((16, 16, 4), (1, 1, 2), (0, 0, 0)))
    write_dicom_series(volume, tmp_path / "mr", extra={"Modality": "MR"})
    result = run("info", str(tmp_path / "mr"), *(["--json"] if as_json else []))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"pelabelup info: error: {tmp_path / 'mr'}: not CT: no CT series "
                                                  "found (Modality MR (4 files))"]
    assert ("MR" in json.loads(result.stdout)["series"][0]["modality"]) if as_json else ("modality" in result.stdout)


def test_synth_contrast_phase_is_recorded_in_each_case(tmp_path):
    out = tmp_path / "mixed"
    result = run("synth", "--out", str(out), "--n", "1", "--seed", "4", "--size-xy", "96", "96", "--slices", "40",
                 "--contrast-phase", "mixed", "--workers", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    record = json.loads(next(out.glob("phantom-*/case.json")).read_text())
    assert record["params"]["overrides"]["contrast_phase"] == "mixed"
    contrast = record["params"]["anatomy"]["contrast"]
    assert 0.4 * contrast["pa_hu"] <= contrast["aorta_hu"] <= contrast["pa_hu"]
    refused = run("synth", "--out", str(tmp_path / "x"), "--n", "1", "--contrast-phase", "venous")
    assert refused.returncode == 2 and "--contrast-phase" in refused.stderr


def test_synth_hybrid_without_real_data_is_refused(tmp_path):
    result = run("synth", "--out", str(tmp_path / "x"), "--n", "0", "--hybrid", "1")
    assert result.returncode == 2
    assert "--real-cta" in result.stderr


@pytest.mark.parametrize(("options", "message"), [
    (["--slices", "1"], "--size-xy 96 96 --slices 1: 2-D image (size 96x96x1, a single slice): expected a 3-D CT "
                        "volume"),
    (["--spacing", "50", "50", "50"], "--size-xy 96 96 --spacing 50 50 50: absurd voxel spacing (50, 50, 50) mm"),
    (["--size-xy", "512", "512", "--spacing", "5", "5", "5"],
     "--size-xy 512 512 --spacing 5 5 5: field of view 2560 x 2560 x "),
    (["--size-xy", "4", "96"], "--size-xy: must be an integer >= 8"),
    (["--spacing", "0", "1", "1"], "--spacing: must be three positive numbers"),
    (["--slices", "0"], "--slices: must be a positive integer, got 0"),
])
def test_synth_refuses_a_grid_before_writing_anything(tmp_path, options, message):
    """Grids the loader would refuse to read back (``pelabelup info`` says why), and grids the generator refuses,
    are refused up front in one line naming the options, and no --out folder is left."""
    grid = ["--size-xy", "96", "96"] if "--size-xy" not in options else []
    result = run("synth", "--out", str(tmp_path / "cohort"), "--n", "2", "--no-progress", *grid, *options)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"pelabelup synth: error: {message}" in result.stderr
    assert "size_xy" not in result.stderr and "spacing_mm" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--workers", "--n", "--hybrid"])
def test_synth_refuses_counts_out_of_range(tmp_path, option):
    result = run("synth", "--out", str(tmp_path / "cohort"), option, "0" if option == "--workers" else "-1")
    assert result.returncode == 2
    assert f"argument {option}: must be >= {1 if option == '--workers' else 0}" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


OUT_COMMANDS = {"synth": ["--n", "1", "--no-progress"], "demo": ["--device", "cpu"],
                "evaluate": ["--cohort", "no-cohort", "--predictions", "no-predictions", "--no-progress"]}


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_an_out_that_is_a_file_or_under_one_is_refused(tmp_path, command):
    """--out may be an existing folder (written into), never a file: one line naming it, before any work."""
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    for out, reason in ((notes, "exists and is not a folder"), (notes / "x", f"cannot be created: {notes} is not a folder")):
        result = run(command, "--out", str(out), *OUT_COMMANDS[command])
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"pelabelup {command}: error: {out}: {reason}" + (
            " (choose another --out)" if out == notes else "")
    assert notes.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.fixture
def a_locked_folder(tmp_path):
    """A folder this process cannot write in: a read-only one of ours, or, for root (who writes into any
    folder whatever its mode), the kernel's read-only ``/proc/sys``."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        yield locked
        locked.chmod(0o700)
    elif not os.access("/proc/sys", os.W_OK):
        yield Path("/proc/sys")
    else:
        pytest.skip("root, and /proc/sys is writable: no folder here refuses root")


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_an_out_that_cannot_be_written_is_refused(a_locked_folder, command):
    for out, reason in ((a_locked_folder, "cannot write in this folder"),
                        (a_locked_folder / "x", "cannot be created: no permission")):
        result = run(command, "--out", str(out), *OUT_COMMANDS[command])
        assert result.returncode == 2
        assert result.stderr.strip().startswith(f"pelabelup {command}: error: {out}: {reason}")


@pytest.mark.slow
def test_demo_analyses_the_sample_case_with_the_bundled_models(tmp_path):
    result = run("demo", "--out", str(tmp_path / "demo"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "overview picture" in result.stdout and "PE probability" in result.stdout
    (case,) = [p for p in (tmp_path / "demo").iterdir() if p.is_dir()]
    record = json.loads((case / "case.json").read_text())
    assert record["positive"] and len(record["emboli"]) >= 1
    analysis = json.loads((case / "analysis" / "result.json").read_text())
    assert analysis["pe_probability"] > 0.5  # a positive case, found positive
    assert {m["task"] for m in analysis["models"]} >= {"artery", "classifier"}
    assert all(m["bundled"] for m in analysis["models"])
    for name in ("heatmap.nii.gz", "pseudomask.nii.gz", "segmentation.nii.gz", "arteries.nii.gz",
                 "segmentation.seg.nrrd"):
        assert (case / "analysis" / name).is_file(), name
    assert (case / "overview.png").stat().st_size > 10_000
    again = run("demo", "--out", str(tmp_path / "demo"), "--device", "cpu")  # a rerun replaces the analysis
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in case.iterdir() if p.name.startswith(".")) == []


def test_installed_console_script_runs():
    script = Path(sys.executable).parent / "pelabelup"
    assert script.is_file(), "the pelabelup entry point is installed beside the interpreter"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("pelabelup ")


def test_os_errors_are_one_line_with_the_path_and_a_missing_models_folder_is_named(tmp_path):
    """A file-system refusal (a name longer than the file system allows) and a mistyped --models-dir each give
    one line naming the path, with no traceback."""
    long_name = tmp_path / ("x" * 300 + ".nii.gz")
    result = run("info", str(long_name))
    assert result.returncode == 2 and result.stderr.strip() == f"pelabelup info: error: {long_name}: File name too long"
    result = run("analyze", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "out"), "--models-dir",
                 str(tmp_path / "no-such-models"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"pelabelup analyze: error: {tmp_path / 'no-such-models'}: models folder not found"


@pytest.mark.parametrize(("args", "message"), [
    (["analyze"], "pelabelup analyze: error: the following arguments are required: input, --out "
                  "(see pelabelup analyze --help)"),
    (["finetune", "--threads", "-3"], "pelabelup finetune: error: argument --threads: must be >= 0, got -3 "
                                      "(see pelabelup finetune --help)"),
    (["evaluate", "--workers", "0"], "pelabelup evaluate: error: argument --workers: must be >= 1, got 0 "
                                     "(see pelabelup evaluate --help)"),
    (["nonsense"], "pelabelup: error: argument COMMAND: invalid choice: 'nonsense'"),
])
def test_a_bad_command_line_is_one_line_without_the_usage_block(args, message):
    result = run(*args)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(message)
