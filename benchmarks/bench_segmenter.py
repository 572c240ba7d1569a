"""Segmenter inference: time and peak memory of each step, at one or more working spacings.

Usage: ``python benchmarks/bench_segmenter.py [--model FOLDER] [--threads 2] [--size 512 512 300]
[--spacing 0.7 0.7 1.0] [--territory-mm 220 150 200] [--working-spacing 1.0 1.5] [--device cpu]``.

Runs the steps of :func:`PELabelUpLib.models.segmenter.predict_segmentation` on a synthetic CT (smooth random
HU) whose artery territory is a lattice of 4 mm tubes filling a box of ``--territory-mm`` (x, y, z) mm around the
volume's centre (a lung-wide tree spans about 220 x 150 x 200 mm): the cost follows the territory's box, not its
content. Without ``--model`` an untrained DynUNet of the trainer's default spec is timed at each
``--working-spacing``. Prints each step's time and the peak resident memory (CPU) or torch's peak (CUDA).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.models.segmenter import (
    SegmenterPreprocessing,
    prepare_segmenter_input,
    segmenter_channels,
    segmenter_probability,
)
from PELabelUpLib.preprocessing import resample_like
from PELabelUpLib.volume import CTVolume

#: the trainer's default network (training.segmenter.train.network_spec((16, 32, 64, 128)))
DEFAULT_SPEC = {"name": "DynUNet", "kwargs": {"filters": [16, 32, 64, 128], "norm_name": "batch"}}


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def synthetic_case(size_xyz: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                   territory_mm: tuple[float, float, float]) -> tuple[CTVolume, np.ndarray]:
    """Smooth random HU and a lattice-of-tubes territory ``(Z, Y, X)`` filling ``territory_mm`` around the centre."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(-1000, 600, size=(size_xyz[2] // 8 + 1, size_xyz[1] // 8 + 1, size_xyz[0] // 8 + 1))
    zoom = [n / c for n, c in zip(size_xyz[::-1], coarse.shape, strict=True)]
    hu = ndimage.zoom(coarse.astype(np.float32), zoom, order=1)[: size_xyz[2], : size_xyz[1], : size_xyz[0]]
    geometry = Geometry(size=size_xyz, spacing_mm=spacing_mm, origin_mm=(-180.0, -180.0, -150.0))
    axes_mm = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(size_xyz, spacing_mm, strict=True)]
    x, y, z = np.meshgrid(*axes_mm, indexing="ij", sparse=True)
    inside = (np.abs(x) <= territory_mm[0] / 2) & (np.abs(y) <= territory_mm[1] / 2) & (np.abs(z) <= territory_mm[2] / 2)
    near = lambda a: np.abs((a + 10.0) % 20.0 - 10.0) <= 2.0  # noqa: E731  tubes every 20 mm, 4 mm across
    tubes = (near(x) & near(y)) | (near(y) & near(z)) | (near(x) & near(z))
    territory = (inside & tubes).transpose(2, 1, 0).astype(np.uint8)
    return CTVolume(hu=hu.astype(np.int16), geometry=geometry, source="benchmark volume"), territory


def time_one(volume: CTVolume, territory: np.ndarray, network: torch.nn.Module, prep: SegmenterPreprocessing,
             device: torch.device) -> tuple[dict[str, float], tuple[int, int, int]]:
    times: dict[str, float] = {}
    t = time.perf_counter()
    prepared = prepare_segmenter_input(volume, territory, prep)
    image = segmenter_channels(prepared.hu, prepared.territory, prep.window_hu)
    times["grow, cut, resample"] = time.perf_counter() - t
    t = time.perf_counter()
    prob_work = segmenter_probability(image, network, prep, device=device)
    times["sliding window"] = time.perf_counter() - t
    t = time.perf_counter()
    prob_box = resample_like(prob_work, prepared.geometry, prepared.box_geometry, "linear", default_value=0.0)
    prob = np.zeros(volume.hu.shape, np.float32)
    prob[prepared.box.slices] = prob_box
    prob[~prepared.allowed] = 0.0
    times["back to input grid"] = time.perf_counter() - t
    return times, prepared.geometry.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="segmenter model folder (default: an untrained default spec)")
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 1.0), metavar=("X", "Y", "Z"))
    parser.add_argument("--territory-mm", type=float, nargs=3, default=(220.0, 150.0, 200.0), metavar=("X", "Y", "Z"))
    parser.add_argument("--working-spacing", type=float, nargs="+", default=(1.0, 1.5), help="mm, isotropic")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    volume, territory = synthetic_case(tuple(args.size), tuple(args.spacing), tuple(args.territory_mm))
    print(f"torch {torch.__version__} | device {device} | threads {torch.get_num_threads()} | input "
          f"{volume.geometry.size} voxels at {tuple(args.spacing)} mm | territory box {tuple(args.territory_mm)} mm, "
          f"{int(territory.sum())} voxels")
    if args.model is not None:
        network, metadata = load_model(args.model, device=str(device))
        runs = [(f"{metadata['name']} {metadata['version']}", SegmenterPreprocessing.from_metadata(metadata))]
    else:
        torch.manual_seed(0)
        network = build_network(DEFAULT_SPEC).to(device).eval()
        runs = [(f"untrained DynUNet (default spec) at {s:g} mm", SegmenterPreprocessing(spacing_mm=(s, s, s)))
                for s in args.working_spacing]
    print(f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters")
    for label, prep in runs:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rss_before = peak_rss_mib()
        times, work_size = time_one(volume, territory, network, prep, device)
        print(f"{label}: working box {work_size} voxels, roi {prep.roi_size}")
        for name, seconds in times.items():
            print(f"  {name:<22} {seconds:8.2f} s")
        print(f"  {'total':<22} {sum(times.values()):8.2f} s")
        if device.type == "cuda":
            print(f"  peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
        print(f"  peak resident memory {peak_rss_mib():.0f} MiB (was {rss_before:.0f} MiB before)")


if __name__ == "__main__":
    main()
