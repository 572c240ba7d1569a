"""Per-slice time of each explainer on a small 2.5-D CNN at 160 x 160 (CPU by default).

Usage: ``python benchmarks/bench_explain.py [--batch 8] [--repeats 5] [--threads 2] [--ig-steps 32]``.
Prints the median over repeats of (batch time / batch size), in milliseconds per slice.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from PELabelUpLib.explain import get_explainer


class SliceNet(nn.Module):
    """2.5-D slice classifier: 3 neighbouring slices in, one PE logit out; four stride-2 conv blocks."""

    def __init__(self, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for out in (width, 2 * width, 4 * width, 4 * width):
            blocks.append(nn.Sequential(nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out),
                                        nn.ReLU(), nn.Conv2d(out, out, 3, padding=1), nn.ReLU()))
            channels = out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="slices per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = SliceNet().to(device).eval()
    slices = torch.rand(args.batch, 3, args.size, args.size, device=device)
    settings = {
        "gradcam (last block)": ("gradcam", {"target_layers": "features.3.4"}),
        "gradcam (2 blocks)": ("gradcam", {"target_layers": ("features.1.4", "features.3.4")}),
        "gradcampp (last block)": ("gradcampp", {"target_layers": "features.3.4"}),
        f"ig ({args.ig_steps} steps, zeros)": ("ig", {"n_steps": args.ig_steps, "internal_batch_size": 64}),
        f"ig ({args.ig_steps} steps, blurred)": (
            "ig", {"n_steps": args.ig_steps, "internal_batch_size": 64, "baseline": "blurred"}),
        f"ig ({args.ig_steps} steps) + smoothgrad x4": (
            "ig", {"n_steps": args.ig_steps, "internal_batch_size": 64, "noise_samples": 4}),
    }
    print(f"torch {torch.__version__} | device {device} | threads {torch.get_num_threads()} | "
          f"batch {args.batch} x 3 x {args.size} x {args.size} | median of {args.repeats}")
    print(f"{'explainer':40s} {'ms / slice':>10s}")
    for label, (name, kwargs) in settings.items():
        explainer = get_explainer(name, **kwargs)
        explainer(model, slices)  # warm-up
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            explainer(model, slices)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) / args.batch)
        print(f"{label:40s} {1000 * statistics.median(times):10.1f}")


if __name__ == "__main__":
    main()
