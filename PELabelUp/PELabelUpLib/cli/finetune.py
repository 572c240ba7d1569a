"""``pelabelup finetune``: a new segmenter version, fine-tuned on corrected masks where they exist.

Inference never imports training code, and the fine-tuning loop is the training engine (one process or
torchrun, checkpoints, logs): so this command checks its inputs with the core, then runs
``python -m training.finetune`` (the ``training`` package of a PELabelUp source checkout) in a child process
with the same Python, and returns its exit status. The base model folder is only read.

Bad numbers are refused while the command line is parsed; the child reports what it refuses (a label folder
that is not there, a --version that does not rise) in this command's one-line form, ``pelabelup finetune:
error: <file>: <reason>`` with exit status 2, and a refused run leaves no run folder behind.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..datastore import Datastore
from ..errors import InputError
from ..models.folder import read_model_folder
from ..precision import TRAINING_PRECISIONS
from .options import PROG_ENV, non_negative_int, positive_float, positive_int

HELP = "fine-tune a segmenter on corrected masks (pseudo-masks elsewhere) into a new model version"
EPILOG = """\
examples:
  pelabelup finetune --datastore datastore --cohort cohort --labels pseudo:predictions \\
      --base-model Resources/Models/pelabelup-segmenter --out models/pelabelup-segmenter-1.1.0
  pelabelup finetune --datastore datastore \\
      --base-model models/pelabelup-segmenter-1.1.0 --out models/pelabelup-segmenter-1.2.0 --epochs 5
  pelabelup finetune --cohort cohort --labels corrected:corrections pseudo:predictions \\
      --base-model Resources/Models/pelabelup-segmenter --out models/pelabelup-segmenter-1.1.0

--datastore: the radiologists' exports (latest final mask of every case, on its stored image, in the artery
territory exported with it); a cohort case with the same case id (or StudyInstanceUID) is replaced by it.

--labels lists the cohort's label sources in order of precedence, the first holding a file for a case wins:
  corrected:DIR   DIR/<case_id>/corrected.nii.gz   (a reader's corrected mask, 0/1)
  pseudo:DIR      DIR/<case_id>/pseudomask.nii.gz  (a label-up prediction folder)
  gt              the cohort's emboli.nii.gz
Masks lie on their CT's grid. The new folder keeps the base's name, network and preprocessing, and records
a higher version, its parent (name, version, weights sha256) and a changelog entry; which label file each
case used is in its metadata (training.cases) and in <out>.run/label_sources.csv. Needs the training
package of a PELabelUp source checkout (and torch, monai).
Exit status: 0 done, 2 bad input (one line on stderr; a refused run leaves no run folder behind).
"""

TRAINING_MODULE = "training.finetune"


def repository_root() -> Path:
    """The source checkout holding ``PELabelUp/PELabelUpLib`` (this file's package) and ``training/``."""
    return Path(__file__).resolve().parents[3]


def training_command(args: argparse.Namespace) -> list[str]:
    """The child's command line (same Python; options passed through)."""
    command = [sys.executable, "-m", TRAINING_MODULE, "--base-model", str(args.base_model), "--out", str(args.out)]
    if args.labels:
        command += ["--labels", *args.labels]
    for option in ("cohort", "datastore", "territory", "version", "epochs", "patches_per_epoch", "batch_size", "lr",
                   "val_cases", "seed", "device", "precision", "run_dir", "cache_dir", "threads"):
        value = getattr(args, option)
        if value is not None:
            command += [f"--{option.replace('_', '-')}", str(value)]
    return command


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help=HELP, description=HELP, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", type=Path, help="cohort folder (cohort.csv; NIfTI or RSPECT layout)")
    p.add_argument("--labels", nargs="+", default=[], metavar="SOURCE",
                   help="corrected:DIR | pseudo:DIR | gt, in order of precedence (with --cohort)")
    p.add_argument("--datastore", type=Path, help="training datastore: its final masks come first")
    p.add_argument("--base-model", required=True, type=Path, help="segmenter model folder to start from (read only)")
    p.add_argument("--out", required=True, type=Path, help="new model folder (must not exist)")
    p.add_argument("--territory", help="gt | pred:DIR (default: pred:DIR of the first pseudo source, else gt)")
    p.add_argument("--version", help="new model version (default: the base's minor version + 1)")
    p.add_argument("--epochs", type=positive_int, help="epochs (default: 10)")
    p.add_argument("--patches-per-epoch", type=positive_int, help="training patches per epoch (default: 64)")
    p.add_argument("--batch-size", type=positive_int, help="patches per step (default: 2)")
    p.add_argument("--lr", type=positive_float, help="peak learning rate (default: 5e-4)")
    p.add_argument("--val-cases", type=non_negative_int,
                   help="cases held out for the per-epoch Dice, 0 for none (default: 2)")
    p.add_argument("--seed", type=non_negative_int,
                   help="seed of the patch draws, augmentation and validation patches (default: 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="auto: the GPU when torch sees one, else the CPU (default: auto)")
    p.add_argument("--precision", choices=TRAINING_PRECISIONS,
                   help="auto: bf16/fp16 on CUDA, float32 on CPU; bf16 also on CPUs with AMX or AVX512-BF16, about "
                        "2.8x faster there (default: auto)")
    p.add_argument("--threads", type=non_negative_int, help="torch CPU threads (0 or unset: torch's choice)")
    p.add_argument("--run-dir", type=Path, help="logs and checkpoints (default: <out>.run)")
    p.add_argument("--cache-dir", type=Path,
                   help="working-grid cache (default: <cohort>/.cache, or <run-dir>/cache without --cohort)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.datastore is not None:
        Datastore(args.datastore, create=False, clean_on_open=False)  # InputError unless it is one
    base = read_model_folder(args.base_model)
    if base.metadata.get("task") != "segmenter":
        raise InputError(args.base_model, f"a {base.metadata.get('task')!r} model; finetune needs a segmenter")
    if args.out.exists():
        raise InputError(args.out, "exists already (a new version goes into a new folder)")
    root = repository_root()
    if not (root / "training" / "finetune.py").is_file():
        raise InputError(root, "no training package here: fine-tuning runs from a PELabelUp source checkout")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env[PROG_ENV] = f"pelabelup {args.command}"  # the child's refusals read as this command's
    return subprocess.run(training_command(args), env=env, check=False).returncode
