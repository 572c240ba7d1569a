"""The module's analysis child: command line, JSON-lines stream, real ``pelabelup analyze`` children run, fail and
are cancelled; requirements looked up without importing them."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slicer_module_helpers import poll_until_stage

from PELabelUpLib.analysis.interrupt import EXIT_TERMINATED
from PELabelUpLib.analysis.progress import STAGES, JsonLinesProgress, ProgressEvent
from PELabelUpLib.explain.registry import explainer_choices
from PELabelUpLib.slicer_process import (
    CHILD_REQUIREMENTS,
    DEVICES,
    PACKAGE_ROOT,
    AnalysisProcess,
    ProgressStream,
    Requirement,
    build_analyze_command,
    child_python,
    kill_if_overdue,
    label_decision,
    missing_requirements,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def an_input(tmp_path: Path) -> Path:
    path = tmp_path / "ct.nrrd"
    path.write_bytes(b"not read by the builder")
    return path


def test_the_command_runs_the_cli_module_with_json_progress(an_input, tmp_path):
    command = build_analyze_command(an_input, tmp_path / "out", python_executable=sys.executable, device="cpu",
                                    explainer="ig", model_versions={"segmenter": " 1.1.0 "},
                                    models_dir=tmp_path / "models", base_env={"PYTHONPATH": "elsewhere", "KEEP": "1"})
    argv = list(command.argv)
    assert argv[:5] == [sys.executable, "-m", "PELabelUpLib.cli.main", "analyze", str(an_input)]
    pairs = dict(zip(argv[5::2], argv[6::2], strict=False))
    assert pairs == {"--out": str(tmp_path / "out"), "--device": "cpu", "--explainer": "ig", "--progress": "json",
                     "--model-version": "segmenter=1.1.0", "--models-dir": str(tmp_path / "models")}
    assert command.env["PYTHONPATH"].split(os.pathsep) == [str(PACKAGE_ROOT), "elsewhere"]
    assert command.env["KEEP"] == "1" and command.env["PYTHONIOENCODING"] == "utf-8"
    assert command.out_dir == tmp_path / "out"


@pytest.mark.parametrize(("change", "bad_value"), [
    ({"input_path": "missing.nii.gz"}, "missing.nii.gz"),
    ({"out_dir": "EXISTING"}, "EXISTING"),
    ({"python_executable": "no-such-python-3.11"}, "no-such-python-3.11"),
    ({"device": "tpu"}, "'tpu'"),
    ({"explainer": "lime"}, "'lime'"),
    ({"model_versions": {"vessels": "1.0"}}, "'vessels'"),
    ({"model_versions": {"segmenter": " "}}, "' '"),
])
def test_bad_settings_are_refused_naming_the_value(an_input, tmp_path, change, bad_value):
    (tmp_path / "EXISTING").mkdir()
    args = {"input_path": an_input, "out_dir": tmp_path / "out", "python_executable": sys.executable} | change
    for key in ("input_path", "out_dir"):
        if isinstance(args[key], str):
            args[key] = tmp_path / args[key]
    with pytest.raises(ValueError, match=re.escape(bad_value)):
        build_analyze_command(args.pop("input_path"), args.pop("out_dir"), **args)


def test_the_cli_offers_the_choices_the_builder_checks():
    """``pelabelup analyze --help`` in a real child with the builder's environment: same devices and explainers."""
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    done = subprocess.run([sys.executable, "-m", "PELabelUpLib.cli.main", "analyze", "--help"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    assert "--device {" + ",".join(DEVICES) + "}" in done.stdout
    assert "--explainer {" + ",".join(explainer_choices()) + "}" in done.stdout
    assert "--progress {json," in done.stdout


def _protocol_text(events: list[tuple[str, float, str]]) -> str:
    stream = io.StringIO()
    progress = JsonLinesProgress(stream)
    for event in events:
        progress(*event)
    return stream.getvalue()


EVENTS = [("models", 0.0, "loading models on cpu"), ("arteries", 0.135, "segmenting — the tree"),
          ("write", 0.9, "writing heatmap"), ("done", 1.0, "PE probability 0.831, 1 embolus")]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_the_stream_yields_the_same_events_whatever_the_chunks(cuts):
    text = _protocol_text(EVENTS)
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    stream = ProgressStream()
    events = [e for a, b in zip(bounds, bounds[1:], strict=False) for e in stream.feed(text[a:b])] + stream.close()
    assert [(e.stage, e.fraction, e.message) for e in events] == [(s, round(f, 4), m) for s, f, m in EVENTS]
    assert stream.last == events[-1] and stream.other_lines == []


def test_other_lines_are_kept_and_do_not_stop_the_stream():
    stream = ProgressStream()
    events = stream.feed('Warning: something printed\n{"stage": "load", "fraction": 2}\n{"stage": "load", "fract')
    events += stream.feed('ion": 0.05, "message": "reading"}\n\n')
    events += stream.feed('{"stage": "done", "fraction": 1.0, "message": "ok"}')  # last line, no newline
    events += stream.close()
    assert events == [ProgressEvent("load", 0.05, "reading"), ProgressEvent("done", 1.0, "ok")]
    assert stream.other_lines == ["Warning: something printed", '{"stage": "load", "fraction": 2}']


@pytest.mark.slow
def test_a_real_analysis_reports_rising_progress_and_writes_its_folder(an_analysed_study):
    events = an_analysed_study.events
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1].stage == "done"
    assert {e.stage for e in events} <= set(STAGES)
    assert {"models", "load", "arteries", "classifier", "pseudomask", "write"} <= {e.stage for e in events}
    assert (an_analysed_study.analysis / "result.json").is_file()


@pytest.mark.slow
def test_cancel_ends_the_child_and_leaves_no_output(tmp_path, an_analysed_study):
    out = tmp_path / "out"
    process = AnalysisProcess(build_analyze_command(an_analysed_study.study, out, python_executable=sys.executable,
                                                    device="cpu", models_dir=an_analysed_study.models_dir))
    process.start()
    poll_until_stage(process, "arteries", process.stderr_lines)  # then the networks are running
    process.cancel()
    process.wait(timeout_s=60)
    assert process.state == "cancelled"
    assert process.returncode == EXIT_TERMINATED
    assert process.error_message() == "the analysis was cancelled"
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_failing_child_reports_its_one_line_error(tmp_path, an_analysed_study):
    empty_models = tmp_path / "no-models"
    empty_models.mkdir()
    process = AnalysisProcess(build_analyze_command(an_analysed_study.study, tmp_path / "out",
                                                    python_executable=sys.executable, models_dir=empty_models))
    process.start()
    process.wait(timeout_s=120)
    assert process.state == "failed" and process.returncode == 2
    assert process.error_message().startswith("pelabelup analyze: error: ")
    assert "pelabelup-arteries" in process.error_message()


def test_the_child_python_is_pythonslicer_when_present_else_a_python(tmp_path):
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    assert child_python(search_path=str(tmp_path), current="/opt/Slicer/bin/SlicerApp-real") == str(launcher)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert child_python(search_path=str(empty), current=sys.executable) == sys.executable
    with pytest.raises(ValueError, match="SlicerApp-real"):
        child_python(search_path=str(empty), current="/opt/Slicer/bin/SlicerApp-real")


def test_poll_and_cancel_before_start_do_nothing(an_input, tmp_path):
    process = AnalysisProcess(build_analyze_command(an_input, tmp_path / "out", python_executable=sys.executable))
    process.cancel()
    assert (process.poll(), process.state, process.returncode) == ([], "not started", None)


def test_requirements_are_found_without_importing_them():
    code = ("import sys; from PELabelUpLib.slicer_process import missing_requirements, Requirement as R; "
            "print([r.module for r in missing_requirements([R('torch', 'torch'), R('json', 'json'), "
            "R('pelabelup_no_such_package', 'x')])], 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT)))
    assert done.stdout.split() == ["['pelabelup_no_such_package']", "False"]
    assert missing_requirements([Requirement("pelabelup_no_such_package", "x")])[0].pip == "x"


def test_the_child_requirements_match_the_project_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ ]", d)[0].lower(): d for d in
                project["dependencies"] + project["optional-dependencies"]["ml"]}
    for requirement in CHILD_REQUIREMENTS:
        assert requirement.module in declared, f"{requirement.module} is not a project dependency"
        if requirement.installer == "pip":
            assert requirement.pip == declared[requirement.module], "the same lower bound as pyproject.toml"
    assert [r.module for r in CHILD_REQUIREMENTS if r.installer == "pytorch-extension"] == ["torch"]


@pytest.mark.parametrize(("probability", "reviewer_says_pe", "decision"), [
    (0.9, True, "confirmed"), (0.9, False, "changed"), (0.1, False, "confirmed"), (0.1, True, "changed"),
    (0.5, True, "confirmed"), (0.4999, True, "changed"),
])
def test_label_decision_compares_the_reviewer_with_the_model(probability, reviewer_says_pe, decision):
    assert label_decision(probability, reviewer_says_pe) == decision


def test_label_decision_refuses_a_probability_outside_0_1():
    with pytest.raises(ValueError, match="1.5"):
        label_decision(1.5, True)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM cannot be ignored on Windows")
def test_a_child_that_ignores_sigterm_is_killed_once_overdue_and_not_before() -> None:
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.terminate()  # ignored
        kill_if_overdue(proc, None, 0.0, "test child")  # never terminated by us: left alone
        kill_if_overdue(proc, time.monotonic(), 30.0, "test child")  # not overdue yet
        assert proc.poll() is None
        kill_if_overdue(proc, time.monotonic() - 5.0, 1.0, "test child")
        assert proc.wait(timeout=10) == -9
    finally:
        proc.kill()
        proc.wait()
