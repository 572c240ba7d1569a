"""A run's settings as plain JSON: what checkpoints compare on resume and model folders record."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
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


def portable_config(config: dict[str, Any], path_keys: Iterable[str] = (), *,
                    absolute_paths: bool = False) -> dict[str, Any]:
    """``config`` with the values of ``path_keys`` cut to their last component (a folder's name).

    Model folders are shared: their metadata names the cohort and the models a run used, never where they
    lay on the training machine.

    Args:
        absolute_paths: also cut every absolute path string (POSIX ``/...`` or Windows ``C:\\...``), at any depth
            of nested dicts and lists, whatever its key (what :mod:`training.bundle` does to a whole metadata).
    """
    keys = set(path_keys)
    return {k: (Path(v).name if k in keys and isinstance(v, str) and v
                else _cut_absolute(v) if absolute_paths else v) for k, v in config.items()}


def _cut_absolute(value: Any) -> Any:
    """``value`` with each absolute path string in it (in nested dicts and lists too) cut to its last component."""
    if isinstance(value, dict):
        return {k: _cut_absolute(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut_absolute(v) for v in value]
    if isinstance(value, str) and "\n" not in value:
        for flavour in (PurePosixPath, PureWindowsPath):
            if flavour(value).is_absolute():
                return flavour(value).name
    return value
