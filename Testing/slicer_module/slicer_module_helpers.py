"""Paths of the Slicer module's files, shared by its tests (imported by name: test folders have no __init__)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO_ROOT / "PELabelUp" / "PELabelUp.py"
QT_PACKAGE = REPO_ROOT / "PELabelUp" / "PELabelUpQt"  # the module's Qt helpers (need Slicer's Python, like the module)
GUI_FILES = (MODULE_FILE, *sorted(QT_PACKAGE.glob("*.py")))  # read, never imported, by the tests
UI_FILE = REPO_ROOT / "Resources" / "UI" / "PELabelUp.ui"
ANALYSIS_TESTS = REPO_ROOT / "Testing" / "analysis"  # analysis_helpers: the tiny models and the clot study
