"""The long-lived worker (``pelabelup serve``): models loaded once, one analysis per request line, failures that do
not stop it, the same outputs as ``pelabelup analyze``; in-process and as a real child process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from analysis_helpers import REPO_ROOT

from PELabelUpLib.analysis.progress import JsonLinesProgress
from PELabelUpLib.analysis.requests import Request, parse_request
from PELabelUpLib.analysis.run import analyze
from PELabelUpLib.analysis.serve import serve
from PELabelUpLib.cli.main import main
from PELabelUpLib.errors import InputError


def events_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(("line", "reason"), [
    ("not json", "not JSON"),
    ('["a", "b"]', "JSON object"),
    ('{"out": "x"}', "'input'"),
    ('{"input": "a.nii.gz", "out": ""}', "'out'"),
    ('{"input": "a.nii.gz", "out": "x", "id": 7}', "'id'"),
])
def test_bad_request_lines_are_refused_naming_the_fault(line, reason):
    with pytest.raises(ValueError, match=reason):
        parse_request(line)


def test_a_request_reads_back_and_its_id_defaults_to_the_output_name(tmp_path):
    request = Request(input=tmp_path / "ct é.nii.gz", out=tmp_path / "out", id="case 7")
    assert parse_request(request.to_json()) == request
    assert parse_request(json.dumps({"input": "a.nii.gz", "out": "runs/case-9"})).id == "case-9"


@pytest.mark.slow
def test_serve_analyses_each_request_and_goes_on_after_failures(tmp_path, a_nifti_study, a_dicom_study, a_models_dir):
    (tmp_path / "taken").mkdir()
    lines = [Request(a_nifti_study, tmp_path / "one", "first").to_json(),
             "", "not json",
             Request(tmp_path / "missing.nii.gz", tmp_path / "lost", "missing").to_json(),
             Request(a_nifti_study, tmp_path / "taken", "taken").to_json(),
             Request(a_dicom_study, tmp_path / "two", "dicom").to_json()]
    stream = io.StringIO()
    done, failed = serve(iter(line + "\n" for line in lines), JsonLinesProgress(stream), device="cpu",
                         models_dir=a_models_dir)
    assert (done, failed) == (2, 3)
    events = events_of(stream.getvalue())
    assert [e["stage"] for e in events[:2]] == ["models", "ready"]
    assert "input" not in events[0] and "input" not in events[1]
    by_request: dict[str, list[dict]] = {}
    for e in events[2:]:
        by_request.setdefault(e["input"], []).append(e)
    assert list(by_request) == ["first", "request 2", "missing", "taken", "dicom"]
    for name, own in by_request.items():
        fractions = [e["fraction"] for e in own]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0, name  # every request rises from 0 to 1
        assert own[-1]["stage"] == ("done" if name in ("first", "dicom") else "failed"), name
    assert {e["index"] for e in by_request["dicom"]} == {5}
    assert "missing.nii.gz" in by_request["missing"][-1]["message"]
    assert "exists already" in by_request["taken"][-1]["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "taken", "two"]  # failures left nothing
    first = json.loads((tmp_path / "one" / "result.json").read_text())
    second = json.loads((tmp_path / "two" / "result.json").read_text())
    assert first["timings_s"]["models"] > 0 and second["timings_s"]["models"] == 0  # loaded once
    assert (first["worker"], second["worker"]) == ({"request": 0}, {"request": 5})
    # the DICOM series and the NIfTI file hold the same study: the same results on the same grid
    assert second["pe_probability"] == pytest.approx(first["pe_probability"], abs=1e-3)
    a, b = (nib.load(tmp_path / n / "pseudomask.nii.gz") for n in ("one", "two"))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


@pytest.mark.slow
def test_serve_writes_what_analyze_writes(tmp_path, a_nifti_study, a_models_dir):
    """The contract is one: a request's folder holds analyze's files, voxel for voxel, and the same record."""
    analyze(a_nifti_study, tmp_path / "analyze", device="cpu", models_dir=a_models_dir)
    serve(iter([Request(a_nifti_study, tmp_path / "serve", "s").to_json()]), JsonLinesProgress(io.StringIO()),
          device="cpu", models_dir=a_models_dir)
    files = sorted(p.name for p in (tmp_path / "analyze").iterdir())
    assert sorted(p.name for p in (tmp_path / "serve").iterdir()) == files
    for name in files:
        if name.endswith(".nii.gz"):
            a, b = (nib.load(tmp_path / folder / name) for folder in ("analyze", "serve"))
            np.testing.assert_array_equal(a.affine, b.affine)
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj), err_msg=name)
    records = [json.loads((tmp_path / folder / "result.json").read_text()) for folder in ("analyze", "serve")]
    assert records[1].pop("worker") == {"request": 0}
    for record in records:
        del record["timings_s"]
    assert records[0] == records[1]


def test_serve_without_models_fails_before_reading_requests(tmp_path):
    (tmp_path / "no-models").mkdir()
    stream = io.StringIO()
    with pytest.raises(InputError, match="pelabelup-arteries"):
        serve(iter(["never read\n"]), JsonLinesProgress(stream), device="cpu", models_dir=tmp_path / "no-models")
    assert [e["stage"] for e in events_of(stream.getvalue())] == ["models"]


@pytest.mark.slow
def test_the_serve_command_reads_stdin_until_it_ends(tmp_path, a_nifti_study, a_models_dir):
    requests = "\n".join([Request(a_nifti_study, tmp_path / "a", "a").to_json(),
                          json.dumps({"input": str(a_nifti_study), "out": str(tmp_path / "b")})]) + "\n"
    done = subprocess.run([sys.executable, "-m", "PELabelUpLib.cli.main", "serve", "--device", "cpu",
                           "--models-dir", str(a_models_dir)], input=requests, capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT / "PELabelUp")))
    assert done.returncode == 0, done.stderr
    events = events_of(done.stdout)
    assert [e["input"] for e in events if e["stage"] == "done"] == ["a", "b"]
    assert "end of input; 2 analysed, 0 failed" in done.stderr
    assert (tmp_path / "a" / "result.json").is_file() and (tmp_path / "b" / "segmentation.seg.nrrd").is_file()


def test_serve_help_documents_the_protocol(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    assert '"stage": "ready"' in text and '"failed"' in text and "--models-dir" in text
