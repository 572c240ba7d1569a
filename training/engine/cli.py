"""The shared ``main()`` skeleton of the trainers: processes, logging, one-line errors, clean exit; and what each
training process sets up first (:func:`start_process`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import TypeVar

import torch

from PELabelUpLib.errors import InputError

from .distributed import DistContext, cleanup, setup_distributed
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

    Returns:
        ``(ok, train's result, the context)``; ``ok`` is False (and the result ``None``) after a user error,
        which is logged as one line.
    """
    ctx = setup_distributed(device=args.device)
    setup_logging(ctx)
    try:
        return True, train(args, ctx), ctx
    except USER_ERRORS as exc:
        log.error("%s", exc)
        return False, None, ctx
    finally:
        cleanup()


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
