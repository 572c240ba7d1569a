"""Batch analysis: a folder or list of inputs, one output folder each, resume, failures, torchrun ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from analysis_helpers import REPO_ROOT, clot_study, run_cli

from PELabelUpLib.analysis.batch import list_inputs, output_names, rank_share, read_input_list, torchrun_rank
from PELabelUpLib.cli.main import main
from PELabelUpLib.errors import InputError
from PELabelUpLib.io import write_dicom_series, write_volume


@pytest.fixture
def a_batch_folder(tmp_path, a_clot_study):
    """Two NIfTI studies, one DICOM series folder, one 2-D image (bad), and a stray text file (ignored)."""
    folder = tmp_path / "inputs"
    write_volume(a_clot_study[0], folder / "alpha.nii.gz")
    write_volume(clot_study(seed=1)[0], folder / "beta.nrrd")
    write_dicom_series(a_clot_study[0], folder / "gamma")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.int16)), str(folder / "flat.nii.gz"))
    (folder / "README.txt").write_text("inputs of the batch test\n")
    return folder


def batch(capsys, source, out, models, *extra: str) -> tuple[int, str, str]:
    code = main(["analyze", str(source), "--batch", "--out", str(out), "--models-dir", str(models), "--device", "cpu",
                 "--progress", "json", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_a_folder_batch_resumes_and_reports_failures(tmp_path, capsys, a_batch_folder, a_models_dir):
    out = tmp_path / "out"
    code, stdout, stderr = batch(capsys, a_batch_folder, out, a_models_dir)
    assert code == 1, "one input failed"
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "beta", "gamma"]
    for name in ("alpha", "beta", "gamma"):
        record = json.loads((out / name / "result.json").read_text())
        assert record["batch"] == {"rank": 0, "world_size": 1, "name": name}
        assert len(record["emboli"]) == 1
    assert "flat: error:" in stderr and "2-D image" in stderr
    assert "3 analysed, 0 skipped (finished earlier), 1 failed" in stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    assert [e["fraction"] for e in events] == sorted(e["fraction"] for e in events)
    assert events[-1]["fraction"] == 1.0 and events[-1]["stage"] == "done"
    assert {e.get("input") for e in events if "input" in e} == {"alpha", "beta", "flat", "gamma"}
    assert {e["total"] for e in events if "total" in e} == {4}

    # resume: finished inputs are skipped; a run killed hard left a partial folder and no result for beta
    alpha_written = (out / "alpha" / "result.json").stat().st_mtime_ns
    for item in (out / "beta").iterdir():
        item.unlink()
    (out / "beta").rmdir()
    (out / ".beta.partial-killed").mkdir()
    code, _, stderr = batch(capsys, a_batch_folder, out, a_models_dir)
    assert code == 1
    assert "1 analysed, 2 skipped (finished earlier), 1 failed" in stderr
    assert (out / "alpha" / "result.json").stat().st_mtime_ns == alpha_written
    assert (out / "beta" / "result.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "beta", "gamma"], "the partial folder is gone"


def test_a_list_file_names_outputs_by_their_paths(tmp_path):
    for case in ("case_1", "case_2"):
        (tmp_path / "cohort" / case).mkdir(parents=True)
        (tmp_path / "cohort" / case / "ct.nii.gz").write_bytes(b"x")
    listing = tmp_path / "inputs.txt"
    listing.write_text("# two cases\ncohort/case_1/ct.nii.gz\n\n" + f"{tmp_path / 'cohort/case_2/ct.nii.gz'}  # abs\n")
    inputs = read_input_list(listing)
    assert inputs == [tmp_path / "cohort/case_1/ct.nii.gz", tmp_path / "cohort/case_2/ct.nii.gz"]
    assert list_inputs(listing) == inputs
    assert output_names(inputs) == ["case_1__ct", "case_2__ct"]
    assert output_names([tmp_path / "a.nii.gz", tmp_path / "b" / "series"]) == ["a", "b__series"]
    with pytest.raises(ValueError, match="share the output folder 'a'"):
        output_names([tmp_path / "a.nii", tmp_path / "a.nii.gz"])


def test_a_dicom_series_folder_is_not_a_batch(tmp_path, a_dicom_study):
    with pytest.raises(InputError, match="run without --batch"):
        list_inputs(a_dicom_study)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no inputs"):
        list_inputs(tmp_path / "empty")
    one = next(p for p in sorted(a_dicom_study.iterdir()) if p.is_file())
    with pytest.raises(InputError, match="is one image.*run it without --batch"):
        list_inputs(one)


def test_one_image_file_is_not_a_list_of_inputs(tmp_path, a_nifti_study):
    """A gzip image read as a list of paths failed with a UTF-8 decode error."""
    done = run_cli("analyze", str(a_nifti_study), "--batch", "--out", str(tmp_path / "out"), "--progress", "none")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"pelabelup analyze: error: {a_nifti_study}: is one image, not a folder of inputs or a list file: run it "
        "without --batch"]


def test_ranks_take_every_world_th_input(monkeypatch):
    assert rank_share(7, 0, 3) == [0, 3, 6] and rank_share(7, 2, 3) == [2, 5] and rank_share(1, 1, 2) == []
    with pytest.raises(ValueError, match="rank must lie"):
        rank_share(3, 2, 2)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_rank() == (0, 1, None)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_rank() == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK must lie"):
        torchrun_rank()


@pytest.mark.slow
def test_torchrun_spreads_inputs_over_ranks(tmp_path, a_clot_study, a_models_dir):
    inputs = tmp_path / "inputs"
    for name in ("a", "b", "c"):
        write_volume(a_clot_study[0], inputs / f"{name}.nii.gz")
    out = tmp_path / "out"
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "PELabelUpLib.cli.main", "analyze", str(inputs), "--batch", "--out", str(out),
                           "--models-dir", str(a_models_dir), "--device", "cpu", "--progress", "none"],
                          capture_output=True, text=True, timeout=300, check=False, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = {name: json.loads((out / name / "result.json").read_text())["batch"] for name in ("a", "b", "c")}
    assert ranks == {"a": {"rank": 0, "world_size": 2, "name": "a"}, "b": {"rank": 1, "world_size": 2, "name": "b"},
                     "c": {"rank": 0, "world_size": 2, "name": "c"}}


def test_a_binary_list_file_is_one_line_naming_it(tmp_path):
    listing = tmp_path / "inputs.zip"
    listing.write_bytes(b"PK\x03\x04\xff\xfe\x00binary")
    with pytest.raises(InputError, match="inputs.zip.*not a text list of inputs"):
        list_inputs(listing)
