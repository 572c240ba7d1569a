"""Exceptions of the core. Front ends turn them into one-line messages and exit codes."""

from __future__ import annotations

from pathlib import Path


class PELabelUpError(Exception):
    """Base class of every error the core raises on purpose."""


class InputError(PELabelUpError, ValueError):
    """Bad input: the message names the offending file and the reason, on one line.

    ``str(InputError("scan.nii.gz", "2-D image, expected a 3-D volume"))`` is
    ``"scan.nii.gz: 2-D image, expected a 3-D volume"``.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, always
        super().__init__(f"{self.path}: {self.reason}")
