"""Builders of the analysis tests: tiny model folders whose behaviour is known, and a CT with one clot.

The models are real networks of the bundled architectures (``ArteryUNet``, ``SliceClassifier``, ``DynUNet``)
saved with ``save_model_folder``, with a few weights set by hand:

- the artery model's last layer is a constant logit of +12, so its territory is the whole scanned body;
- the classifier's first channel detects a filling defect (dark pixel inside the territory: territory here and
  around, minus 1.5 x brightness, minus 1), every later stage passes that channel on, and the head's logit is
  ``30 x max - 6``: slices with the clot read ~0.99, others ~0.0025;
- the segmenter's last layer is a constant logit of +12: its mask is its whole allowed region.

The study: blood at 350 HU filling the grid, a frame of air (the loader wants some air), one 50 HU clot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.models.folder import save_model_folder
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.volume import CTVolume

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTERY_SPEC = {"name": "ArteryUNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
CLASSIFIER_SPEC = {"name": "SliceClassifier", "kwargs": {"in_channels": 4, "widths": [2, 2, 2, 2], "dropout": 0.0}}
SEGMENTER_SPEC = {"name": "DynUNet", "kwargs": {"kernel_size": [3, 3, 3], "strides": [1, 2, 2],
                                                "upsample_kernel_size": [2, 2], "filters": [4, 4, 8],
                                                "res_block": False}}
CLASSIFIER_PREP = {"pixel_mm": 0.5, "size_px": 32, "context": 1, "window_hu": [100.0, 700.0],
                   "territory_dilation_mm": 1.0}
OBLIQUE = Geometry(size=(40, 44, 20), spacing_mm=(0.9, 0.8, 1.6), origin_mm=(-21.5, 37.25, -310.0),
                   direction=tuple(Rotation.from_euler("zx", (12.0, 7.0), degrees=True).as_matrix().ravel()))
CLOT_SLICES = range(8, 13)


def _constant_last_layer(network: torch.nn.Module, logit: float) -> torch.nn.Module:
    """Zero the weights of the last parametrised layer and set its bias: the output is ``logit`` everywhere."""
    last_bias = [name for name, _ in network.named_parameters() if name.endswith("bias")][-1]
    layer = network.get_submodule(last_bias.rsplit(".", 1)[0])
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.fill_(logit)
    return network


def filling_defect_classifier() -> torch.nn.Module:
    """A ``SliceClassifier`` whose channel 0 is the filling-defect detector (see the module docstring)."""
    torch.manual_seed(0)
    net = build_network(CLASSIFIER_SPEC)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                module.weight[0, 0, 1, 1] = 1.0  # pass channel 0 on
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
        first_conv, first_norm = net.features[0][0], net.features[0][1]
        first_conv.weight.zero_()
        first_conv.weight[0, 3] = 1.0 / 9.0  # local mean of the territory ...
        first_conv.weight[0, 3, 1, 1] += 1.0  # ... plus the pixel's own territory
        first_conv.weight[0, 1, 1, 1] = -1.5  # minus its brightness
        first_norm.bias[0] = -1.0
        net.head.weight.zero_()
        net.head.weight[0, 0] = 30.0  # max of channel 0
        net.head.bias.fill_(-6.0)
    return net.eval()


def make_models_dir(root: Path, *, segmenter: bool = False) -> Path:
    """A models folder with ``pelabelup-arteries`` and ``pelabelup-classifier`` (and ``pelabelup-segmenter``)."""
    torch.manual_seed(0)
    artery = _constant_last_layer(build_network(ARTERY_SPEC), 12.0)
    save_model_folder(root / "pelabelup-arteries", artery, {
        "name": "pelabelup-arteries", "version": "0.0.1-test", "task": "artery", "network": ARTERY_SPEC,
        "preprocessing": {"spacing_mm": [2.0, 2.0, 2.0], "window_hu": [100.0, 700.0], "roi_size": [16, 16, 16],
                          "threshold": 0.5}})
    save_model_folder(root / "pelabelup-classifier", filling_defect_classifier(), {
        "name": "pelabelup-classifier", "version": "0.0.2-test", "task": "classifier", "network": CLASSIFIER_SPEC,
        "preprocessing": CLASSIFIER_PREP})
    if segmenter:
        add_segmenter(root)
    return root


def add_segmenter(root: Path, version: str = "0.0.3-test", folder: str = "pelabelup-segmenter") -> Path:
    torch.manual_seed(0)
    network = _constant_last_layer(build_network(SEGMENTER_SPEC), 12.0)
    return save_model_folder(root / folder, network, {
        "name": "pelabelup-segmenter", "version": version, "task": "segmenter", "network": SEGMENTER_SPEC,
        "preprocessing": {"spacing_mm": [1.5, 1.5, 1.5], "window_hu": [100.0, 700.0], "roi_size": [32, 32, 32],
                          "threshold": 0.5, "territory_dilation_mm": 1.0, "context_mm": 0.0}}).path


def clot_study(geometry: Geometry = OBLIQUE, seed: int = 0) -> tuple[CTVolume, np.ndarray]:
    """Blood (350 HU) with a 2-voxel air frame and a 50 HU clot on :data:`CLOT_SLICES`; returns (CT, clot)."""
    rng = np.random.default_rng(seed)
    z, y, x = geometry.shape_zyx
    hu = 350.0 + rng.normal(0.0, 8.0, (z, y, x))
    hu[:, :2], hu[:, -2:], hu[:, :, :2], hu[:, :, -2:] = -800.0, -800.0, -800.0, -800.0
    yy, xx = np.mgrid[:y, :x]
    sy, sx = geometry.spacing_mm[1], geometry.spacing_mm[0]
    disk = ((yy - y / 2 + 2) * sy) ** 2 + ((xx - x / 2 - 1) * sx) ** 2 <= 3.2 ** 2
    clot = np.zeros((z, y, x), bool)
    clot[CLOT_SLICES.start:CLOT_SLICES.stop] = disk
    hu[clot] = 50.0 + rng.normal(0.0, 8.0, int(clot.sum()))
    return CTVolume(hu=np.round(hu).astype(np.int16), geometry=geometry, source="clot study"), clot


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "PELabelUpLib.cli.main", *args]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``pelabelup ARGS`` in a real child process (CPU only), its output captured."""
    import os

    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO_ROOT / "PELabelUp")}
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, check=False, env=env,
                          cwd=REPO_ROOT)
