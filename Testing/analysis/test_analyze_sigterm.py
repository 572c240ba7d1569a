"""SIGTERM stops an analysis promptly and leaves neither the output folder nor a partial one.

A real ``pelabelup analyze`` child is killed while it computes; and a real SIGTERM is delivered to this process
while the output files are being written (the partial folder then exists and must be removed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from analysis_helpers import REPO_ROOT, cli_command

from PELabelUpLib.analysis.interrupt import EXIT_TERMINATED, Terminated, sigterm_raises
from PELabelUpLib.analysis.progress import parse_progress_line
from PELabelUpLib.analysis.run import analyze


@pytest.mark.slow
def test_a_killed_child_leaves_no_output(tmp_path, a_nifti_study, a_models_dir):
    out = tmp_path / "out"
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.Popen(cli_command("analyze", str(a_nifti_study), "--out", str(out), "--models-dir",
                                         str(a_models_dir), "--device", "cpu", "--progress", "json"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    try:
        stages = []
        for line in child.stdout:
            stages.append(parse_progress_line(line).stage)
            if stages[-1] == "arteries":  # the networks are running
                child.send_signal(signal.SIGTERM)
                killed_at = time.monotonic()
                break
        else:
            pytest.fail(f"the child ended before the arteries stage: {stages}, {child.stderr.read()[-2000:]}")
        child.wait(timeout=60)
        waited_s = time.monotonic() - killed_at
        stderr = child.stderr.read()
        last = [parse_progress_line(line) for line in child.stdout if line.strip()][-1]
    finally:
        child.kill()
        child.wait()
    assert child.returncode == EXIT_TERMINATED, stderr[-2000:]
    assert "terminated (SIGTERM)" in stderr
    assert (last.stage, last.fraction) == ("failed", 1.0) and "SIGTERM" in last.message, "the stream ends at 1.0"
    assert waited_s < 20, f"SIGTERM took {waited_s:.1f} s to stop the analysis"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "no partial folder either"


def test_sigterm_while_writing_removes_the_partial_folder(tmp_path, a_nifti_study, a_models_dir):
    out = tmp_path / "out"
    seen: dict[str, list[str]] = {}

    def progress(stage: str, fraction: float, message: str) -> None:
        if stage == "write" and "seg.nrrd" in message:
            (partial,) = tmp_path.glob(".out.partial-*")
            seen["files"] = sorted(p.name for p in partial.rglob("*") if p.is_file())
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal; the handler raises at the next instruction

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_raises():
        analyze(a_nifti_study, out, device="cpu", models_dir=a_models_dir, progress=progress)
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is restored"
    assert {"heatmap.nii.gz", "pseudomask.nii.gz", "segmentation.nii.gz"} <= set(seen["files"]), \
        "the signal came while files were being written"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "the partial folder was removed"
