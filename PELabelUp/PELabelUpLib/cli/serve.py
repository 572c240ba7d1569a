"""``pelabelup serve``: a long-lived analysis worker that reads requests on stdin (see :mod:`..analysis.serve`)."""

from __future__ import annotations

import argparse
import sys

from ..analysis.interrupt import EXIT_TERMINATED, Terminated, sigterm_raises
from ..analysis.progress import JsonLinesProgress
from .analyze import add_model_options

HELP = "keep the models loaded and analyse one CT per request line read on stdin (for front ends)"
EPILOG = """\
protocol (JSON lines; pelabelup analyze's progress lines, each tagged with the request's "input" id):
  stdin:  {"input": "scan.nii.gz", "out": "scan-analysis", "id": "case 7"}     (one request a line; id optional)
          optional "arteries": "pa.nii.gz" (and "arteries_label"), as pelabelup analyze --arteries
  stdout: {"stage": "ready", ...} once the models are loaded; then per request its progress lines, ending
          with stage "done" (fraction 1.0) or "failed" (fraction 1.0, the reason as message)

example:
  printf '{"input": "a.nii.gz", "out": "a-out"}\\n{"input": "b.nii.gz", "out": "b-out"}\\n' | pelabelup serve

Relative paths are relative to the worker's working folder. Each output folder appears only when complete;
a failed request (a bad input, or a request with a key not listed above) leaves nothing and the worker goes on.
Exit status: 0 at the end of stdin, 2 missing or tampered models (one line on stderr), 143 SIGTERM (the
analysis in progress leaves nothing).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help=HELP, description=HELP, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.serve import serve

    progress = JsonLinesProgress(sys.stdout)
    with sigterm_raises():
        try:
            done, failed = serve(iter(sys.stdin.readline, ""), progress, device=args.device, explainer=args.explainer,
                                 precision=args.precision, models_dir=args.models_dir,
                                 model_versions=dict(args.model_version))
        except Terminated:
            print("pelabelup serve: terminated (SIGTERM); the output in progress was removed", file=sys.stderr)
            return EXIT_TERMINATED
        finally:
            progress.close()
    print(f"pelabelup serve: end of input; {done} analysed, {failed} failed", file=sys.stderr)
    return 0
