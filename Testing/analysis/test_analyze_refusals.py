"""What ``pelabelup analyze`` refuses: bad input, tampered or missing models, an existing output folder.

Each refusal is one line on stderr and exit status 2, and leaves no output folder (nor a partial one beside it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_helpers import run_cli

from PELabelUpLib.cli.main import main
from PELabelUpLib.io import write_dicom_series
from PELabelUpLib.volume import CTVolume


def analyze_in_process(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["analyze", *args, "--device", "cpu", "--progress", "none"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_nothing_written(out: Path) -> None:
    assert not out.exists(), f"{out} was created"
    assert not list(out.parent.glob(f".{out.name}*")), "a partial folder was left"


def a_2d_image(folder: Path) -> Path:
    image = sitk.GetImageFromArray(np.full((32, 32), -500, np.int16))
    path = folder / "slice.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def a_text_file(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text("not an image\n")
    return path


def a_corrupt_dicom_folder(folder: Path) -> Path:
    series = folder / "corrupt"
    series.mkdir()
    rng = np.random.default_rng(1)
    for k in range(3):
        (series / f"slice_{k}.dcm").write_bytes(b"\0" * 128 + b"DICM" + rng.bytes(300))
    return series


def an_mr_series(folder: Path, volume: CTVolume) -> Path:
    series = folder / "mr"
    write_dicom_series(volume, series, extra={"Modality": "MR"})
    return series


def a_missing_path(folder: Path) -> Path:
    return folder / "no-such-scan.nii.gz"


@pytest.mark.parametrize(("make", "reason"), [
    (a_2d_image, "2-D image"),
    (a_text_file, "unknown format"),
    (a_corrupt_dicom_folder, "not a DICOM file"),
    (a_missing_path, "not found"),
])
def test_bad_input_is_one_line_and_exit_2(make, reason, tmp_path, capsys, a_models_dir):
    bad = make(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = analyze_in_process(capsys, str(bad), "--out", str(out), "--models-dir", str(a_models_dir))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("pelabelup analyze: error: ") and str(bad) in stderr and reason in stderr
    assert_nothing_written(out)


def test_a_series_that_is_not_ct_is_refused(tmp_path, capsys, a_models_dir, a_clot_study):
    series = an_mr_series(tmp_path, a_clot_study[0])
    out = tmp_path / "out"
    code, _, stderr = analyze_in_process(capsys, str(series), "--out", str(out), "--models-dir", str(a_models_dir))
    assert code == 2 and "not CT" in stderr and len(stderr.strip().splitlines()) == 1
    assert_nothing_written(out)


@pytest.mark.slow
def test_a_real_process_exits_2_with_one_line(tmp_path, a_models_dir):
    bad = a_2d_image(tmp_path)
    out = tmp_path / "out"
    done = run_cli("analyze", str(bad), "--out", str(out), "--models-dir", str(a_models_dir), "--device", "cpu")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"pelabelup analyze: error: {bad}: 2-D image")
    assert done.stdout == ""
    assert_nothing_written(out)


def test_tampered_weights_are_refused(tmp_path, capsys, a_models_dir, a_nifti_study):
    models = tmp_path / "models"
    shutil.copytree(a_models_dir, models)
    weights = models / "pelabelup-classifier" / "model.pt"
    data = bytearray(weights.read_bytes())
    data[-40] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = tmp_path / "out"
    code, _, stderr = analyze_in_process(capsys, str(a_nifti_study), "--out", str(out), "--models-dir", str(models))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1
    assert str(weights) in stderr and "sha256 mismatch" in stderr
    assert_nothing_written(out)


def test_a_missing_model_names_its_folder(tmp_path, capsys, a_models_dir, a_nifti_study):
    models = tmp_path / "models"
    shutil.copytree(a_models_dir / "pelabelup-arteries", models / "pelabelup-arteries")
    out = tmp_path / "out"
    code, _, stderr = analyze_in_process(capsys, str(a_nifti_study), "--out", str(out), "--models-dir", str(models))
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert f"{models / 'pelabelup-classifier'}: PE slice classifier model 'pelabelup-classifier' not found" in stderr
    assert_nothing_written(out)


def test_an_existing_output_folder_is_never_overwritten(tmp_path, capsys, a_models_dir, a_nifti_study):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = analyze_in_process(capsys, str(a_nifti_study), "--out", str(out), "--models-dir",
                                         str(a_models_dir))
    assert code == 2 and "exists already" in stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_output_that_cannot_be_created_is_refused_before_the_analysis(tmp_path, capsys, a_models_dir,
                                                                          a_nifti_study):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    out = tmp_path / "notes.txt" / "runs" / "case-1"
    code = main(["analyze", str(a_nifti_study), "--out", str(out), "--models-dir", str(a_models_dir), "--device", "cpu",
                 "--progress", "json"])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert f"{out}: cannot be created: {tmp_path / 'notes.txt'} is not a folder" in stderr
    # refused before the models were loaded: the progress stream is its end alone, the reason at 1.0
    assert [json.loads(line) for line in stdout.splitlines()] == [
        {"stage": "failed", "fraction": 1.0, "message": stderr.strip().removeprefix("pelabelup analyze: error: ")}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_refused_input_ends_the_progress_stream_at_one(tmp_path, capsys, a_models_dir):
    """``--progress json`` ends at 1.0 also when the analysis fails: with the reason, after the stages it reached."""
    picture = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((32, 32), -1000, np.int16)), str(picture))
    code = main(["analyze", str(picture), "--out", str(tmp_path / "out"), "--models-dir", str(a_models_dir),
                 "--device", "cpu", "--progress", "json"])
    stdout, stderr = capsys.readouterr()
    events = [json.loads(line) for line in stdout.splitlines()]
    assert code == 2 and [e["stage"] for e in events][-2:] == ["load", "failed"]
    assert events[-1]["fraction"] == 1.0 and "2-D image" in events[-1]["message"] and str(picture) in stderr
    assert_nothing_written(tmp_path / "out")


def test_cuda_asked_for_without_cuda_is_refused(tmp_path, capsys, a_models_dir, a_nifti_study):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["analyze", str(a_nifti_study), "--out", str(tmp_path / "out"), "--device", "cuda",
                 "--models-dir", str(a_models_dir), "--progress", "none"])
    assert code == 2 and "no CUDA device" in capsys.readouterr().err
    assert_nothing_written(tmp_path / "out")
