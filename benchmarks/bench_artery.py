"""Artery territory inference: time and peak memory for a 512 x 512 x 300 CT at the 1.5 mm working grid.

Usage: ``python benchmarks/bench_artery.py [--model Resources/Models/pelabelup-arteries] [--threads 2]
[--size 512 512 300] [--spacing 0.7 0.7 1.0] [--device cpu]``.

Runs the steps of :func:`PELabelUpLib.models.artery.predict_artery_territory` one by one on a synthetic volume
(a phantom with body, table and the air around them) and prints the time of each step and the peak
memory: the process's peak resident memory above what it held before inference (CPU), or torch's peak
allocation (CUDA). Without ``--model`` (or when the folder is missing) an untrained ``ArteryUNet`` of the
default spec is timed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from PELabelUpLib.io import load_ct
from PELabelUpLib.models.artery import (
    ArteryPreprocessing,
    artery_input,
    artery_probability,
    territory_from_probability,
)
from PELabelUpLib.models.folder import load_model
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.volume import CTVolume

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analyze import make_study  # one phantom maker for the benchmarks

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "pelabelup-arteries"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def synthetic_volume(size_xyz: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                     seed: int = 0) -> CTVolume:
    """A synthetic CTPA phantom (body, table and air around it, as a real study has: the body crop matters).

    Made in a child process and read back, so this process's memory high-water mark is inference's alone.
    """
    with tempfile.TemporaryDirectory(prefix="pelabelup-bench-") as tmp:
        path = Path(tmp) / "study.nii.gz"
        maker = multiprocessing.get_context("spawn").Process(target=make_study,
                                                             args=(path, seed, size_xyz, spacing_mm))
        maker.start()
        maker.join()
        if maker.exitcode != 0:
            raise SystemExit(f"making the phantom failed (exit {maker.exitcode})")
        return load_ct(path)


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
    mask, _ = territory_from_probability(prob_work, work_geometry, volume.geometry, prep)
    times["components + back to input grid"] = time.perf_counter() - t
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
