"""What the subcommands (and the trainers ``pelabelup finetune`` runs) share on the command line.

Numbers: argparse ``type=`` converters that refuse a bad value while the command line is parsed, before anything
is read or written. Folders: an ``--out`` folder a command writes into (:func:`check_output_folder`).

Errors: one line on stderr, ``<prog>: error: <file>: <reason>`` (:func:`error_line`). A command that runs a trainer
in a child process (``pelabelup finetune``) puts its own name into the child's environment under
:data:`PROG_ENV`, and the trainer's refusals then read as that command's.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from ..analysis.outputs import check_output_free
from ..errors import InputError

#: environment variable naming the command a trainer's one-line errors start with
PROG_ENV = "PELABELUP_PROG"


def error_line(prog: str, error: BaseException | str) -> str:
    """``<prog>: error: <message>``, the message folded onto one line."""
    return f"{prog}: error: {' '.join(str(error).split())}"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line, like every other error of the command line: the reason
    and where to read more, without argparse's usage block (``--help`` shows that). Its subparsers are of the
    same class."""

    def error(self, message: str):
        self.exit(2, error_line(self.prog, f"{message} (see {self.prog} --help)") + "\n")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (a learning rate)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number from 0 to 1 (a share of patches)."""
    value = float(text)
    if not 0 <= value <= 1:  # refuses nan
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def check_output_folder(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path: a folder that may exist already (written into) or is created later. Refused in one
    line (:class:`InputError` naming it) when it is a file, when it exists but cannot be written, or when it
    could not be created (the rules of :func:`~PELabelUpLib.analysis.outputs.check_output_free`). Nothing is
    created, so a command refused later leaves no folder behind."""
    out = Path(out_dir)
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise InputError(out, "cannot write in this folder (no permission, or a read-only file system)")
        return out
    if out.exists():
        raise InputError(out, "exists and is not a folder (choose another --out)")
    return check_output_free(out)
