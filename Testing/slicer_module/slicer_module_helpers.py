"""Paths of the Slicer module's files, shared by its tests (imported by name: test folders have no __init__)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO_ROOT / "PELabelUp" / "PELabelUp.py"
QT_PACKAGE = REPO_ROOT / "PELabelUp" / "PELabelUpQt"  # the module's Qt helpers (need Slicer's Python, like the module)
GUI_FILES = (MODULE_FILE, *sorted(QT_PACKAGE.glob("*.py")))  # read, never imported, by the tests
UI_FILE = REPO_ROOT / "Resources" / "UI" / "PELabelUp.ui"
ANALYSIS_TESTS = REPO_ROOT / "Testing" / "analysis"  # analysis_helpers: the tiny models and the clot study


def poll_until_stage(running, stage: str, stderr_lines, timeout_s: float = 120.0) -> None:
    """Poll ``running`` (an analysis process or worker job) until one of its events has ``stage``; fails the test
    if it stops running or the time runs out first (showing ``stderr_lines``)."""
    import time

    stages: list[str] = []
    deadline = time.monotonic() + timeout_s
    while stage not in stages:
        assert running.state == "running" and time.monotonic() < deadline, "\n".join(stderr_lines)
        time.sleep(0.02)
        stages += [e.stage for e in running.poll()]
