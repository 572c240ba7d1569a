"""The module's long-lived analysis child (``pelabelup serve``): several analyses in one real child, a failure it
survives, a cancel that leaves nothing and ends it, and its command checked like ``analyze``'s."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_module_helpers import poll_until_stage

from PELabelUpLib.analysis.interrupt import EXIT_TERMINATED
from PELabelUpLib.slicer_process import PACKAGE_ROOT
from PELabelUpLib.slicer_worker import AnalysisWorker, ServeCommand, WorkerJob, build_serve_command


def test_the_command_runs_serve_with_the_model_options(tmp_path):
    command = build_serve_command(python_executable=sys.executable, device="cpu", explainer="ig",
                                  model_versions={"segmenter": "1.1.0"}, models_dir=tmp_path,
                                  base_env={"PYTHONPATH": "elsewhere"})
    assert command.argv[:4] == (sys.executable, "-m", "PELabelUpLib.cli.main", "serve")
    assert dict(zip(command.argv[4::2], command.argv[5::2], strict=True)) == {
        "--device": "cpu", "--explainer": "ig", "--model-version": "segmenter=1.1.0", "--models-dir": str(tmp_path)}
    assert command.env["PYTHONPATH"].startswith(str(PACKAGE_ROOT))
    same = build_serve_command(python_executable=sys.executable, device="cpu", explainer="ig",
                               model_versions={"segmenter": "1.1.0"}, models_dir=tmp_path,
                               base_env={"PYTHONPATH": "elsewhere"})
    assert same == command  # equal settings can reuse a worker
    for bad, value in (({"device": "tpu"}, "'tpu'"), ({"explainer": "lime"}, "'lime'"),
                       ({"python_executable": "no-such-python-3.11"}, "no-such-python-3.11")):
        with pytest.raises(ValueError, match=re.escape(value)):
            build_serve_command(**({"python_executable": sys.executable} | bad))


@pytest.fixture
def a_worker(an_analysed_study):
    worker = AnalysisWorker(build_serve_command(python_executable=sys.executable, device="cpu",
                                                models_dir=an_analysed_study.models_dir))
    worker.start()
    yield worker
    worker.close()


@pytest.mark.slow
def test_one_worker_runs_analyses_one_after_another_and_survives_a_failure(tmp_path, an_analysed_study, a_worker,
                                                                           monkeypatch):
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.int16)), str(flat))
    monkeypatch.chdir(tmp_path)  # the worker started elsewhere: a relative output folder is this folder's
    first = a_worker.submit(an_analysed_study.study, "first")
    with pytest.raises(RuntimeError, match="busy"):
        a_worker.submit(an_analysed_study.study, tmp_path / "other")
    events = first.wait(timeout_s=300)
    assert first.state == "done", "\n".join(a_worker.stderr_lines)
    assert a_worker.ready and events[-1].stage == "done" and events[-1].fraction == 1.0
    assert {e.input for e in events} == {first.request_id}
    assert [e.fraction for e in events] == sorted(e.fraction for e in events)
    # the first job shows the worker loading its models (the user waits for them), then its own stages
    assert [e.stage for e in events[:3]] == ["models", "models", "load"]
    assert events[1].message.startswith("models loaded on cpu")

    broken = a_worker.submit(flat, tmp_path / "broken")
    broken.wait(timeout_s=120)
    assert broken.state == "failed" and "2-D image" in broken.error_message()
    assert not (tmp_path / "broken").exists() and a_worker.alive

    second = a_worker.submit(an_analysed_study.study, tmp_path / "second")
    events = second.wait(timeout_s=300)
    assert second.state == "done" and events[0].stage == "load"  # the models were loaded already
    records = [json.loads((tmp_path / n / "result.json").read_text()) for n in ("first", "second")]
    assert records[0]["timings_s"]["models"] > 0 and records[1]["timings_s"]["models"] == 0  # one model load
    assert records[1]["pe_probability"] == pytest.approx(records[0]["pe_probability"])
    assert a_worker.close() == 0 and a_worker.returncode == 0


@pytest.mark.slow
def test_cancel_ends_the_worker_and_leaves_no_output(tmp_path, an_analysed_study, a_worker):
    job = a_worker.submit(an_analysed_study.study, tmp_path / "out")
    poll_until_stage(job, "arteries", a_worker.stderr_lines)  # then the networks are running
    job.cancel()
    job.wait(timeout_s=60)
    assert job.state == "cancelled" and job.error_message() == "the analysis was cancelled"
    assert not a_worker.alive and a_worker.returncode == EXIT_TERMINATED
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="not running"):
        a_worker.submit(an_analysed_study.study, tmp_path / "again")


def test_submit_refuses_a_missing_input_and_an_existing_output(tmp_path, an_analysed_study):
    worker = AnalysisWorker(build_serve_command(python_executable=sys.executable))  # never started
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="missing.nii.gz"):
        worker.submit(tmp_path / "missing.nii.gz", tmp_path / "out")
    with pytest.raises(ValueError, match="exists already"):
        worker.submit(an_analysed_study.study, tmp_path / "taken")
    with pytest.raises(RuntimeError, match="not running"):
        worker.submit(an_analysed_study.study, tmp_path / "out")
    assert worker.poll() == [] and worker.close() is None


def test_an_abandoned_job_is_cancelled_and_stays_so(tmp_path):
    """A job whose worker was closed before it reported the end counts as cancelled; a late word changes nothing."""
    job = WorkerJob(AnalysisWorker(build_serve_command(python_executable=sys.executable)), "a", tmp_path / "out")
    assert job.state == "running"
    job.abandon()
    job._end("done")  # what the worker's last line would have said
    assert job.state == "cancelled"


def test_a_child_deaf_to_its_stdin_and_sigterm_is_killed_by_close(tmp_path):
    """Nothing outlives the module: a child that neither reads its stdin's end nor heeds SIGTERM is killed."""
    ready = tmp_path / "ready"
    deaf = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"pathlib.Path({str(ready)!r}).touch(); time.sleep(120)")
    worker = AnalysisWorker(ServeCommand(argv=(sys.executable, "-c", deaf), env=dict(os.environ)))
    worker.start()
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.terminate()  # ignored
    assert ready.exists() and worker.returncode is None
    t0 = time.monotonic()
    assert worker.close(timeout_s=1.0) is None
    assert worker.returncode == -signal.SIGKILL and time.monotonic() - t0 < 10


@pytest.mark.slow
def test_a_worker_without_models_reports_why_it_ended(tmp_path, an_analysed_study):
    (tmp_path / "no-models").mkdir()
    worker = AnalysisWorker(build_serve_command(python_executable=sys.executable, device="cpu",
                                                models_dir=tmp_path / "no-models"))
    worker.start()
    try:
        job = worker.submit(an_analysed_study.study, tmp_path / "out")
    except RuntimeError as exc:  # it may have ended before the request was written
        message = str(exc)
    else:
        job.wait(timeout_s=120)
        assert job.state == "failed"
        message = job.error_message()
    assert message.startswith(("pelabelup serve: error: ", "the analysis worker is not running: pelabelup serve: error"))
    assert "pelabelup-arteries" in message
    assert not worker.alive and not (tmp_path / "out").exists()
