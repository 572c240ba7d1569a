"""``pelabelup evaluate``: score a cohort's predictions against its ground truth and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ..evaluate.cohort import evaluate_cohort
from ..evaluate.plots import plural
from ..evaluate.pointing import DEFAULT_TOLERANCE_MM
from ..evaluate.predictions import MASK_CHOICES, read_cohort
from ..evaluate.report import write_report
from .options import check_output_folder, non_negative_float, non_negative_int, positive_int

HELP = "score predictions against a synthetic cohort's ground truth; write metrics.json, report.md and plots"
EPILOG = """\
examples:
  pelabelup evaluate --cohort cohort --predictions predictions --out report
  pelabelup evaluate --cohort cohort --predictions predictions --out report --mask segmentation --allow-missing

--cohort is a folder written by 'pelabelup synth' (NIfTI or RSPECT layout). --predictions holds one folder
per case, named after its case_id (or its StudyInstanceUID in the RSPECT layout), with result.json,
heatmap.nii.gz, pseudomask.nii.gz and optionally segmentation.nii.gz and arteries.nii.gz on the case's grid.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help=HELP, description=HELP, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", required=True, type=Path, help="ground-truth cohort folder (with cohort.csv)")
    p.add_argument("--predictions", required=True, type=Path, help="folder of per-case prediction folders")
    p.add_argument("--out", required=True, type=Path,
                   help="report folder (created; an existing one is written into, its files of the same names "
                        "replaced)")
    p.add_argument("--mask", choices=MASK_CHOICES, default="pseudomask",
                   help="predicted mask scored by Dice, detection and FROC (default: pseudomask)")
    p.add_argument("--allow-missing", action="store_true", help="skip cases without a prediction folder")
    p.add_argument("--tolerance-mm", type=non_negative_float, default=DEFAULT_TOLERANCE_MM,
                   help=f"pointing-game hit distance in mm (default: {DEFAULT_TOLERANCE_MM:g})")
    p.add_argument("--panels", type=non_negative_int, default=2,
                   help="slice panels for this many worst and as many best Dice cases (default: 2)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes reading cases (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output_folder(args.out)  # before the cases are read, which takes a while
    n_cases = len(read_cohort(args.cohort))
    with tqdm(total=n_cases, unit="case", desc="evaluate", disable=args.no_progress) as bar:
        evaluation = evaluate_cohort(args.cohort, args.predictions, mask=args.mask, allow_missing=args.allow_missing,
                                     tolerance_mm=args.tolerance_mm, workers=args.workers,
                                     on_case_done=lambda _: bar.update(1))
    report = write_report(evaluation, args.out, n_worst=args.panels, n_best=args.panels)
    m = report.metrics

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    det, seg = m["detection"], m["segmentation"]
    print(f"{len(evaluation.cases)} of {evaluation.n_cohort_cases} cases evaluated"
          + (f" ({len(evaluation.missing)} without prediction skipped)" if evaluation.missing else ""))
    print(f"  study AUC {shown(m['study']['auc'])}, slice AUC {shown(m['slice']['auc'])}")
    print(f"  Dice ({seg['mask']}) mean {shown(seg['dice_mean'])}, median {shown(seg['dice_median'])} "
          f"over {plural(seg['n_cases'], 'positive study', 'positive studies')}")
    print(f"  emboli detected {det['tp']}/{det['n_emboli']}, false-positive components per scan "
          f"{det['fp_per_scan']:.2f}, F1 {det['f1']:.3f}")
    if det.get("by_level"):
        print("  emboli detected by level: " + ", ".join(f"{k} {f}/{n}" for k, (f, n) in det["by_level"].items()))
    if det.get("missed_outside_territory") is not None:
        print(f"  missed emboli with no voxel in the predicted territory: {det['missed_outside_territory']}/{det['fn']}")
    given = sum(c.territory_source == "file" for c in evaluation.cases)
    if given:
        print(f"  artery territory given to the analysis (--arteries), not predicted, in {given} of "
              f"{len(evaluation.cases)} cases")
    print(f"report: {report.report_md} (metrics: {report.metrics_json})")
    return 0
