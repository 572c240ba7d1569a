"""A run's settings as plain JSON: what checkpoints compare on resume and model folders record."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .distributed import DistContext

log = logging.getLogger(__name__)


def run_config(args: argparse.Namespace, ctx: DistContext, skip: Iterable[str] = ()) -> dict[str, Any]:
    """``args`` as JSON values (paths as strings, also in lists; tuples as lists) plus the world size and the
    global batch.

    Args:
        skip: argument names left out (objects that are not settings, e.g. parsed label sources).
    """
    left_out = set(skip)
    config = {k: _json_value(v) for k, v in vars(args).items() if k not in left_out}
    return config | {"world_size": ctx.world_size, "global_batch_size": args.batch_size * ctx.world_size}


def settings_key(settings: Mapping[str, Any]) -> str:
    """A cache folder name for JSON-serialisable ``settings``: the first 16 hex digits of the sha256 of their
    sorted JSON (equal settings, equal key; any change, another key)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _json_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [str(v) if isinstance(v, Path) else v for v in value]
    return value


def portable_config(config: dict[str, Any], path_keys: Iterable[str] = (), *,
                    absolute_paths: bool = False) -> dict[str, Any]:
    """``config`` with the values of ``path_keys`` cut to their last component (a folder's name; each of a list's).

    Model folders are shared: their metadata names the cohort and the models a run used, never where they
    lay on the training machine.

    Args:
        absolute_paths: also cut every absolute path string (POSIX ``/...`` or Windows ``C:\\...``), at any depth
            of nested dicts and lists, whatever its key (what :mod:`training.bundle` does to a whole metadata).
    """
    keys = set(path_keys)
    return {k: (_name(v) if k in keys else _cut_absolute(v) if absolute_paths else v) for k, v in config.items()}


def _name(value: Any) -> Any:
    """A path string -> its last component; a list of them -> their last components; anything else as is."""
    if isinstance(value, str) and value:
        return Path(value).name
    if isinstance(value, list):
        return [_name(v) for v in value]
    return value


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


def warn_changed_settings(saved: Mapping[str, Any], current: Mapping[str, Any], keys: Iterable[str], *,
                          added: Mapping[str, Any] | None = None) -> list[str]:
    """Log (once, as a warning) and return the ``keys`` whose value differs between a resumed checkpoint's run
    configuration (``saved``) and this run's (``current``).

    Args:
        added: values of settings that did not exist when older checkpoints were written; such a checkpoint
            ran with them, so a missing key compares as this value instead of as a change.
    """
    added = added or {}
    changed = sorted(k for k in keys if saved.get(k, added.get(k)) != current.get(k))
    if changed:
        log.warning("resuming with changed settings %s: the run will not match an uninterrupted one", changed)
    return changed
