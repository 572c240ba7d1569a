"""The shared ``main()`` skeleton of the trainers: processes, logging, one-line errors, clean exit; and what each
training process sets up first (:func:`start_process`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import torch

from PELabelUpLib.cli.options import PROG_ENV, error_line
from PELabelUpLib.errors import InputError

from .distributed import DistContext, cleanup, setup_distributed
from .layout import discard_unfinished_run
from .logs import setup_logging
from .precision import Precision, make_precision
from .seeding import configure_determinism, seed_everything

log = logging.getLogger(__name__)
T = TypeVar("T")

#: errors a user can fix (bad input, bad settings, an existing run folder): one line, exit status 2
USER_ERRORS = (InputError, ValueError, FileExistsError)


def run_training(args: argparse.Namespace, train: Callable[[argparse.Namespace, DistContext], T]
                 ) -> tuple[bool, T | None, DistContext]:
    """Set up this process (one process, or a rank under ``torchrun``) and its logging, run ``train`` and always
    leave the process group.

    A user error (:data:`USER_ERRORS`, a device torch does not see included) is reported as one line
    (:func:`report_user_error`); a run folder (``args.run_dir``) that this run made is then removed unless it
    holds a checkpoint (:func:`~.layout.discard_unfinished_run`).

    Returns:
        ``(ok, train's result, the context)``; ``ok`` is False (and the result ``None``) after a user error.
    """
    run_dir = getattr(args, "run_dir", None)
    made_here = run_dir is not None and not run_dir.exists()
    ctx = DistContext()
    try:
        ctx = setup_distributed(device=args.device)
        setup_logging(ctx)
        return True, train(args, ctx), ctx
    except USER_ERRORS as exc:
        report_user_error(exc)
        if made_here and ctx.is_main:
            discard_unfinished_run(run_dir)
        return False, None, ctx
    finally:
        cleanup()


def report_user_error(exc: BaseException, prog: str | None = None) -> None:
    """An error the user can fix, on one line: ``<command>: error: <message>`` on stderr, the command being the
    one that runs this trainer in a child process (it names itself in
    :data:`~PELabelUpLib.cli.options.PROG_ENV`), else ``prog``; without either an ERROR log line."""
    prog = os.environ.get(PROG_ENV) or prog
    if prog:
        print(error_line(prog, exc), file=sys.stderr)
    else:
        log.error("%s", exc)


def start_process(args: argparse.Namespace, ctx: DistContext) -> Precision:
    """Apply a trainer's process options (:func:`~training.engine.options.add_process_arguments`) to this
    process: torch's CPU threads (``--threads``, 0 leaves torch's default), the seed of this rank, deterministic
    algorithms on the CPU (cuDNN's autotuner on CUDA), and return the ``--precision`` for ``ctx.device``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed, ctx.rank)
    configure_determinism(ctx.device)
    return make_precision(ctx.device, args.precision)


def log_completed(run, processes: int | None = None) -> None:
    """One line on how a run (with ``fit``, ``seconds`` and ``model_folder``) ended."""
    r = run.fit
    where = f" ({processes} processes)" if processes is not None else ""
    log.info("%s after %d epochs, %d steps in %.1f s; last epoch %.1f samples/s%s%s", r.ended, r.state.epoch,
             r.state.step, run.seconds, r.samples_per_s, where,
             f"; model folder {run.model_folder}" if run.model_folder else "")
