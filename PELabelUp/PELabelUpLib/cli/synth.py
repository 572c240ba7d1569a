"""``pelabelup synth``: a cohort of synthetic CTPA phantoms (and hybrid real-anatomy cases)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ..synthetic.anatomy import CONTRAST_PHASES
from ..synthetic.cohort import LAYOUTS, generate_cohort, plan_cohort

HELP = "generate a synthetic CTPA cohort with ground truth (NIfTI folders or the RSPECT layout)"
EPILOG = """\
examples:
  pelabelup synth --out cohort --n 40 --seed 1
  pelabelup synth --out rspect --n 20 --layout rspect --workers 2
  pelabelup synth --out later-bolus --n 40 --seed 1 --contrast-phase mixed
  pelabelup synth --out hybrid --n 0 --hybrid 5 --real-cta path/to/real-cta

Each case is deterministic from --seed and the generator version (recorded in case.json). An interrupted
run leaves only whole cases; running the same command again keeps them and makes the rest, and refuses a
folder whose cases another generator version or other options (grid, contrast phase) made.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help=HELP, description=HELP, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--n", type=_positive_int, default=10, help="number of phantoms (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default: 0)")
    p.add_argument("--layout", choices=LAYOUTS, default="nifti",
                   help="nifti: one folder per case; rspect: train/<study>/<series>/<sop>.dcm + train.csv")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--hybrid", type=_positive_int, default=0,
                   help="also make this many hybrid cases: emboli implanted into the real CTA crop")
    p.add_argument("--real-cta", type=Path, default=None,
                   help="folder with cta_crop.nii.gz and pulmonary_artery.nii.gz (needed with --hybrid)")
    p.add_argument("--size-xy", type=int, nargs=2, metavar=("X", "Y"), default=None,
                   help="in-plane size in voxels for every phantom (default: drawn, 96-512)")
    p.add_argument("--slices", type=int, default=None, help="slices per phantom (default: drawn)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="voxel spacing in mm for every phantom (default: drawn)")
    p.add_argument("--contrast-phase", choices=CONTRAST_PHASES, default=None,
                   help="pulmonary (default): the aorta and left heart 110-250 HU, below the pulmonary arteries; "
                        "mixed: a later bolus, aorta 0.4-1.0 times the arteries' HU (the rest of each case as "
                        "with pulmonary)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = {}
    if args.size_xy:
        overrides["size_xy"] = tuple(args.size_xy)
    if args.slices:
        overrides["n_slices"] = args.slices
    if args.spacing:
        overrides["spacing_mm"] = tuple(args.spacing)
    if args.contrast_phase:
        overrides["contrast_phase"] = args.contrast_phase
    if args.hybrid and args.real_cta is None:
        raise ValueError("--hybrid needs --real-cta FOLDER (the folder holding cta_crop.nii.gz)")
    if args.real_cta is not None and not (args.real_cta / "cta_crop.nii.gz").is_file():
        raise FileNotFoundError(f"{args.real_cta}: no cta_crop.nii.gz in this folder")
    requests = plan_cohort(args.n, args.seed, n_hybrid=args.hybrid, real_cta_dir=args.real_cta,
                           overrides=overrides)
    with tqdm(total=len(requests), unit="case", desc="synth", disable=args.no_progress) as bar:
        rows = generate_cohort(args.out, requests, layout=args.layout, workers=args.workers,
                               on_case_done=lambda row: bar.update(1))
    positives = sum(int(r["positive"]) for r in rows)
    print(f"{len(rows)} cases ({positives} positive) written to {args.out} ({args.layout} layout); "
          f"index: {args.out / 'cohort.csv'}")
    return 0
