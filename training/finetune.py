"""Fine-tune a segmenter model folder on corrected masks where they exist and pseudo-masks elsewhere.

    python -m training.finetune --datastore DATASTORE --cohort COHORT --labels pseudo:PREDICTIONS \\
        --base-model Resources/Models/pelabelup-segmenter --out models/pelabelup-segmenter-1.1.0
    python -m training.finetune --cohort COHORT --labels corrected:CORRECTED pseudo:PREDICTIONS \\
        --base-model Resources/Models/pelabelup-segmenter --out models/pelabelup-segmenter-1.1.0

(``pelabelup finetune`` runs this module in a child process.) Precedence (:mod:`training.segmenter.sources`):
a case exported to the ``--datastore`` trains on its latest final mask; any other cohort case on the first
``--labels`` source holding a file for it (with ``corrected:DIR`` first, ``DIR/<case_id>/corrected.nii.gz``
when it exists, its pseudo-mask otherwise). ``label_sources.csv`` in the run folder and
``metadata["training"]["cases"]`` record which file each case used.

The base folder is only read (its weights are checked against their sha256 on loading). The new folder keeps
the base's name, network and preprocessing, gets a higher ``version`` (default: the base's minor version plus
one), ``parent`` (the base's name, version and weights sha256) and a ``changelog`` entry on top of the base's.
Runs in one process or under torchrun, as :mod:`training.segmenter.train`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from PELabelUpLib.errors import InputError
from PELabelUpLib.models.folder import read_model_folder
from training.engine.cli import report_user_error
from training.segmenter.lineage import check_new_version, next_version
from training.segmenter.options import add_training_arguments, finish_args
from training.segmenter.train import run_main

PROG = "python -m training.finetune"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Arguments of a fine-tuning; the base folder's metadata is read to default and check ``--version``."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--base-model", type=Path, required=True, help="segmenter model folder to start from (read only)")
    p.add_argument("--version", help="version of the new model (default: the base's minor version + 1)")
    add_training_arguments(p, epochs=10, lr=5e-4, datastore=True)
    args = p.parse_args(argv)
    base = read_model_folder(args.base_model)
    args.version = check_new_version(base.version, args.version or next_version(base.version))
    base_dir, out_dir = args.base_model.resolve(), args.out.resolve()
    if out_dir == base_dir or base_dir in out_dir.parents:
        raise InputError(args.out, "lies in the base model folder; a new version goes into a new folder (--out)")
    return finish_args(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Fine-tune; a refusal is one line (:func:`~training.engine.cli.report_user_error`), exit status 2."""
    try:
        args = parse_args(argv)
    except (InputError, ValueError) as exc:
        report_user_error(exc, PROG)
        return 2
    return run_main(args, base_path=args.base_model)


if __name__ == "__main__":
    sys.exit(main())
