"""Artery territory inference: time and peak memory for a 512 x 512 x 300 CT at the 1.5 mm working grid.

Usage: ``python benchmarks/bench_artery.py [--model Resources/Models/pelabelup-arteries] [--threads 2]
[--size 512 512 300] [--spacing 0.7 0.7 1.0] [--device cpu]``.

Runs the steps of :func:`PELabelUpLib.models.artery.predict_artery_territory` one by one on a synthetic volume
(smooth random HU; the timing does not depend on the content) and prints the time of each step and the peak
memory: the process's peak resident memory above what it held before inference (CPU), or torch's peak
allocation (CUDA). Without ``--model`` (or when the folder is missing) an untrained ``ArteryUNet`` of the
default spec is timed.
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
from PELabelUpLib.models.artery import (
    ArteryPreprocessing,
    artery_input,
    artery_probability,
    keep_main_components,
)
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.preprocessing import resample_like
from PELabelUpLib.volume import CTVolume

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "pelabelup-arteries"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def synthetic_volume(size_xyz: tuple[int, int, int], spacing_mm: tuple[float, float, float]) -> CTVolume:
    """Smooth random HU (-1000..600) on an axial grid, int16 ``(Z, Y, X)``."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(-1000, 600, size=(size_xyz[2] // 8 + 1, size_xyz[1] // 8 + 1, size_xyz[0] // 8 + 1))
    zoom = [n / c for n, c in zip(size_xyz[::-1], coarse.shape, strict=True)]
    hu = ndimage.zoom(coarse.astype(np.float32), zoom, order=1)[: size_xyz[2], : size_xyz[1], : size_xyz[0]]
    geometry = Geometry(size=size_xyz, spacing_mm=spacing_mm, origin_mm=(-180.0, -180.0, -150.0))
    return CTVolume(hu=hu.astype(np.int16), geometry=geometry, source="benchmark volume")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: the bundled one)")
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 1.0), metavar=("X", "Y", "Z"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--sw-batch-size", type=int, default=2, help="sliding-window patches per forward pass")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if (args.model / "metadata.json").is_file():
        network, metadata = load_model(args.model, device=str(device))
        label = f"{metadata['name']} {metadata['version']}"
    else:
        metadata = {"network": {"name": "ArteryUNet", "kwargs": {}},
                    "preprocessing": ArteryPreprocessing().as_metadata()}
        network = build_network(metadata["network"]).to(device).eval()
        label = "untrained ArteryUNet (default spec)"
    prep = ArteryPreprocessing.from_metadata(metadata)
    volume = synthetic_volume(tuple(args.size), tuple(args.spacing))
    print(f"torch {torch.__version__} | device {device} | threads {torch.get_num_threads()} | model {label} | "
          f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters")
    print(f"input {volume.geometry.size} voxels at {tuple(args.spacing)} mm "
          f"({volume.hu.nbytes / 2**20:.0f} MiB int16); working grid {prep.spacing_mm} mm, roi {prep.roi_size}")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = peak_rss_mib()
    times: dict[str, float] = {}
    t = time.perf_counter()
    image, work_geometry = artery_input(volume, prep)
    times["resample + window"] = time.perf_counter() - t
    t = time.perf_counter()
    prob_work = artery_probability(image, network, prep, device=device, sw_batch_size=args.sw_batch_size)
    times["sliding window"] = time.perf_counter() - t
    t = time.perf_counter()
    prob = resample_like(prob_work, work_geometry, volume.geometry, "linear", default_value=0.0)
    times["back to input grid"] = time.perf_counter() - t
    t = time.perf_counter()
    mask = keep_main_components(prob >= prep.threshold, prep.min_component_fraction).astype(np.uint8)
    times["threshold + components"] = time.perf_counter() - t
    rss_after = peak_rss_mib()

    print(f"working grid {work_geometry.size} voxels; territory {int(mask.sum())} voxels")
    for name, seconds in times.items():
        print(f"  {name:<24} {seconds:8.2f} s")
    print(f"  {'total':<24} {sum(times.values()):8.2f} s")
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    print(f"peak resident memory {rss_after:.0f} MiB ({rss_after - rss_before:.0f} MiB above the "
          f"{rss_before:.0f} MiB held before inference)")


if __name__ == "__main__":
    main()
