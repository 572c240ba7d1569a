"""The ``pelabelup`` command: parses, validates through the core, and turns errors into one-line messages."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import PELabelUpError
from . import analyze, demo, evaluate, finetune, info, serve, synth
from .options import OneLineParser, error_line

SUBCOMMANDS = (synth, info, analyze, serve, evaluate, demo, finetune)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="pelabelup",
        description="PELabelUp: pulmonary embolism detection in CT pulmonary angiography, with pixel-level "
        "masks learned from image-level labels. Research software, not for clinical use.",
    )
    parser.add_argument("--version", action="version", version=f"pelabelup {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    prog = f"pelabelup {args.command}"
    try:
        return int(args.run(args) or 0)
    except (PELabelUpError, ValueError) as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: the path and the reason, without errno's decoration
        where = f"{exc.filename}: " if exc.filename else ""
        print(error_line(prog, f"{where}{exc.strerror or exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pelabelup {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
