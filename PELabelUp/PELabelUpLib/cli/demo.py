"""``pelabelup demo``: the main job on embedded default data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analysis.progress import HumanProgress
from ..demo import run_demo
from ..explain.registry import DEFAULT_EXPLAINER, explainer_choices
from ..pseudomask.describe import emboli_count
from .options import check_output_folder

HELP = ("analyse the embedded sample case (a synthetic CTPA study with four emboli) with the bundled models and "
        "draw a PNG overview")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP)
    p.add_argument("--out", type=Path, default=Path("demo-output"),
                   help="output folder (created; a rerun replaces its analysis; default: demo-output)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when available, else the CPU (default)")
    p.add_argument("--explainer", choices=explainer_choices(), default=DEFAULT_EXPLAINER,
                   help="explanation method, as for pelabelup analyze (default: %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output_folder(args.out)
    result = run_demo(args.out, device=args.device, explainer=args.explainer, progress=HumanProgress(sys.stderr))
    analysis = result.analysis
    print(f"sample case: {result.folder}  (CT ct.nii.gz; ground truth emboli.nii.gz, arteries.nii.gz, case.json)")
    print(f"analysis:    {analysis}  ({result.seconds:.0f} s)")
    print(f"  PE probability {result.pe_probability:.3f}; {emboli_count(result.emboli_found)} segmented, touching {result.emboli_detected} of the "
          f"{result.emboli_true} true emboli")
    print(f"  Dice against the ground truth: pseudo-mask {result.dice_pseudomask:.2f}, "
          f"segmentation {result.dice_segmentation:.2f} ({result.segmentation_source})")
    print("  result.json, heatmap.nii.gz, pseudomask.nii.gz, segmentation.nii.gz, arteries.nii.gz, "
          "segmentation.seg.nrrd")
    print(f"overview picture: {result.overview}")
    print("open in 3D Slicer: drag ct.nii.gz, analysis/heatmap.nii.gz and analysis/segmentation.seg.nrrd into the "
          "window (or File > Add Data); or from Slicer's Python console:")
    print(f"  slicer.util.loadVolume('{result.ct.resolve()}'); "
          f"slicer.util.loadSegmentation('{(analysis / 'segmentation.seg.nrrd').resolve()}')")
    print("or open the CT in the PELabelUp module and press Analyze.")
    return 0
