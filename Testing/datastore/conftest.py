"""Fixtures of the datastore tests: a datastore folder, an oblique CT volume, masks, a worker launcher."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from datastore_helpers import ct_volume, signed_mask

from PELabelUpLib.datastore import Datastore
from PELabelUpLib.volume import CTVolume

WORKER = Path(__file__).with_name("export_worker.py")


@pytest.fixture
def a_datastore(tmp_path: Path) -> Datastore:
    return Datastore(tmp_path / "datastore")


@pytest.fixture
def a_volume() -> CTVolume:
    """24x20x12 CT-like int16 volume on an oblique grid with anisotropic spacing (0.68, 0.81, 2.5) mm."""
    return ct_volume(seed=0)


@pytest.fixture
def a_final_mask(a_volume: CTVolume) -> np.ndarray:
    """A uint8 label map (labels 0, 1, 2) on ``a_volume``'s grid."""
    return signed_mask(a_volume.geometry.shape_zyx, writer=1, export=4)


@pytest.fixture
def start_worker() -> Callable[[dict], subprocess.Popen]:
    """Factory: start ``export_worker.py`` with a spec (a real Python process); all are reaped at teardown."""
    started: list[subprocess.Popen] = []

    def start(spec: dict) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=WORKER.parent)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()
