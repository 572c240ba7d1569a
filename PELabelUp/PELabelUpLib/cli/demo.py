"""``pelabelup demo``: the main job on embedded default data."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..demo import run_demo

HELP = "generate the embedded demo case (synthetic CTPA with emboli), its ground truth and a PNG overview"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP)
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default: demo-output)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.out)
    print(f"demo case: {result.folder}")
    print(f"  CT (HU, NIfTI):        {result.ct}")
    print(f"  ground truth:          {result.folder}/emboli.nii.gz, arteries.nii.gz, lungs.nii.gz")
    print(f"  labels:                {result.case_json} ({result.n_emboli} emboli on {result.positive_slices} slices)")
    print(f"  overview picture:      {result.overview}")
    print("open in 3D Slicer: File > Add Data, choose ct.nii.gz and emboli.nii.gz (tick 'LabelMap' for the mask);")
    print(f"or from Slicer's Python console: slicer.util.loadVolume('{result.ct.resolve()}')")
    return 0
