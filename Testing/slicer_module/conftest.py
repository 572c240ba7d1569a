"""Fixtures of the Slicer module's tests: the module's files, and one real ``pelabelup analyze`` run.

The analysis runs in a real child process (:class:`~PELabelUpLib.slicer_process.AnalysisProcess`) with the tiny
model folders of the analysis tests (``Testing/analysis/analysis_helpers.py``) on their one-clot study, once per
session; the review tests load its output folder into a real headless MRML scene.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from slicer_module_helpers import ANALYSIS_TESTS

if str(ANALYSIS_TESTS) not in sys.path:
    sys.path.insert(0, str(ANALYSIS_TESTS))


@dataclass(frozen=True)
class AnalysedStudy:
    """A worklist study file, the models folder, and the finished analysis of the study with its progress events."""

    study: Path
    models_dir: Path
    analysis: Path
    events: list


@pytest.fixture(scope="session")
def an_analysed_study(tmp_path_factory: pytest.TempPathFactory) -> AnalysedStudy:
    """``worklist/study-a.nii.gz`` analysed into ``worklist/analysis/study-a`` by a real child process (CPU)."""
    from analysis_helpers import clot_study, make_models_dir

    from PELabelUpLib.io import write_volume
    from PELabelUpLib.slicer_process import AnalysisProcess, build_analyze_command

    root = tmp_path_factory.mktemp("slicer-module")
    models = make_models_dir(root / "models")
    study = write_volume(clot_study()[0], root / "worklist" / "study-a.nii.gz")
    command = build_analyze_command(study, root / "worklist" / "analysis" / "study-a", python_executable=sys.executable,
                                    device="cpu", models_dir=models)
    process = AnalysisProcess(command)
    process.start()
    events = process.wait(timeout_s=300)
    assert process.state == "done", "\n".join(process.stderr_lines)
    return AnalysedStudy(study=study, models_dir=models, analysis=command.out_dir, events=events)
