"""A run's settings as plain JSON: what checkpoints compare on resume and model folders record."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .distributed import DistContext


def run_config(args: argparse.Namespace, ctx: DistContext, skip: Iterable[str] = ()) -> dict[str, Any]:
    """``args`` as JSON values (paths as strings, tuples as lists) plus the world size and the global batch.

    Args:
        skip: argument names left out (objects that are not settings, e.g. parsed label sources).
    """
    left_out = set(skip)
    config = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
              for k, v in vars(args).items() if k not in left_out}
    return config | {"world_size": ctx.world_size, "global_batch_size": args.batch_size * ctx.world_size}


def portable_config(config: dict[str, Any], path_keys: Iterable[str]) -> dict[str, Any]:
    """``config`` with the values of ``path_keys`` cut to their last component (a folder's name).

    Model folders are shared: their metadata names the cohort and the models a run used, never where they
    lay on the training machine.
    """
    keys = set(path_keys)
    return {k: (Path(v).name if k in keys and isinstance(v, str) and v else v) for k, v in config.items()}
