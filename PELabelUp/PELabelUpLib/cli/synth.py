"""``pelabelup synth``: a cohort of synthetic CTPA phantoms (and hybrid real-anatomy cases)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..io.validate import check_grid
from ..synthetic.anatomy import CONTRAST_PHASES
from ..synthetic.cohort import LAYOUTS, CaseRequest, generate_cohort, plan_cohort
from .options import check_output_folder, non_negative_int, positive_int

HELP = "generate a synthetic CTPA cohort with ground truth (NIfTI folders or the RSPECT layout)"
EPILOG = """\
examples:
  pelabelup synth --out cohort --n 40 --seed 1
  pelabelup synth --out rspect --n 20 --layout rspect --workers 2
  pelabelup synth --out later-bolus --n 40 --seed 1 --contrast-phase mixed
  pelabelup synth --out hybrid --n 0 --hybrid 5 --real-cta path/to/real-cta

Each case is deterministic from --seed and the generator version (recorded in case.json). An interrupted
run leaves only whole cases; running the same command again keeps them and makes the rest, and refuses a
folder whose cases another generator version or other options (grid, contrast phase) made. Grid options
that make a phantom the loader would refuse (a single slice, a spacing or field of view no CT has) are refused
before anything is written.
"""

#: the phantom parameters (``generate_phantom`` overrides) of the grid options
GRID_OPTIONS = {"size_xy": "--size-xy", "n_slices": "--slices", "spacing_mm": "--spacing"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help=HELP, description=HELP, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (created; a rerun into it keeps the cases it finished)")
    p.add_argument("--n", type=non_negative_int, default=10, help="number of phantoms (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default: 0)")
    p.add_argument("--layout", choices=LAYOUTS, default="nifti",
                   help="nifti: one folder per case; rspect: train/<study>/<series>/<sop>.dcm + train.csv")
    p.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--hybrid", type=non_negative_int, default=0,
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


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The phantom overrides the options ask for (an option not given is drawn per phantom)."""
    given = {"size_xy": args.size_xy and tuple(args.size_xy), "n_slices": args.slices,
             "spacing_mm": args.spacing and tuple(args.spacing), "contrast_phase": args.contrast_phase}
    return {name: value for name, value in given.items() if value is not None}


def _option_error(exc: ValueError) -> ValueError:
    """The generator's refusal of a grid parameter (``size_xy must be ...``), naming the option instead."""
    name, _, reason = str(exc).partition(" ")
    return InputError(GRID_OPTIONS[name], reason) if name in GRID_OPTIONS else exc


def check_grids(requests: list[CaseRequest], overrides: dict[str, Any]) -> None:
    """Refuse grid options that make a phantom the generator refuses, or one the loader would refuse to read
    (its rules: 3-D, spacing and field of view of a CT), naming the options given; before anything is written."""
    from ..synthetic.phantom import plan_phantom  # the generators: not at start-up of the command line

    given = " ".join(f"{option} {' '.join(f'{v:g}' for v in np.atleast_1d(overrides[name]))}"
                     for name, option in GRID_OPTIONS.items() if name in overrides)
    if not given:
        return  # drawn grids are always readable
    for request in (r for r in requests if r.kind == "phantom"):
        try:
            geometry = plan_phantom(request.seed, **dict(request.overrides)).geometry
        except ValueError as exc:
            raise _option_error(exc) from None
        check_grid(given, geometry.size, geometry.spacing_mm)


def run(args: argparse.Namespace) -> int:
    if args.hybrid and args.real_cta is None:
        raise ValueError("--hybrid needs --real-cta FOLDER (the folder holding cta_crop.nii.gz)")
    if args.real_cta is not None and not (args.real_cta / "cta_crop.nii.gz").is_file():
        raise FileNotFoundError(f"{args.real_cta}: no cta_crop.nii.gz in this folder")
    check_output_folder(args.out)
    overrides = _overrides(args)
    requests = plan_cohort(args.n, args.seed, n_hybrid=args.hybrid, real_cta_dir=args.real_cta,
                           overrides=overrides)
    check_grids(requests, overrides)
    with tqdm(total=len(requests), unit="case", desc="synth", disable=args.no_progress) as bar:
        rows = generate_cohort(args.out, requests, layout=args.layout, workers=args.workers,
                               on_case_done=lambda row: bar.update(1))
    positives = sum(int(r["positive"]) for r in rows)
    print(f"{len(rows)} cases ({positives} positive) written to {args.out} ({args.layout} layout); "
          f"index: {args.out / 'cohort.csv'}")
    return 0
