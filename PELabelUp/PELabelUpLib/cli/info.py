"""``pelabelup info``: what the loader sees at a path."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..io import describe
from .options import error_line

HELP = "show what the CT loader sees at a path (file, DICOM folder or RSPECT dataset)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help=HELP, description=HELP)
    p.add_argument("path", type=Path, help="NIfTI/NRRD/MHA file, DICOM file or folder, or RSPECT dataset root")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=run)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    return str(value)


def format_facts(facts: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    width = max((len(k) for k in facts), default=0)
    for key, value in facts.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines += format_facts(value, indent + "  ")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{key}: {len(value)}")
            for i, item in enumerate(value, 1):
                lines.append(f"{indent}  [{i}]")
                lines += format_facts(item, indent + "    ")
        else:
            lines.append(f"{indent}{key.ljust(width)}  {_format(value)}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print what the loader sees; a DICOM folder it cannot load is still described (its series), then its
    reason goes to stderr as the one-line error and the exit status is 2, as for any refused input."""
    facts = describe(args.path)
    if args.json:
        print(json.dumps(facts, indent=2, default=str))
    else:
        print("\n".join(format_facts(facts)))
    if "error" in facts:
        print(error_line("pelabelup info", facts["error"]), file=sys.stderr)
        return 2  # as main() for a refused input
    return 0
