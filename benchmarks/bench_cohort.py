"""Cohort throughput of ``pelabelup synth``: cases per minute with one worker and with every core.

    python benchmarks/bench_cohort.py                 # 6 cases of 256x256x200, NIfTI layout
    python benchmarks/bench_cohort.py --n 8 --layout rspect

Prints the wall time, cases per minute and the speed-up of the parallel run (the machine is shared: read the
ratio, and repeat for a median).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from PELabelUpLib.synthetic.cohort import LAYOUTS, generate_cohort, plan_cohort


def timed_run(n: int, workers: int, layout: str, seed: int) -> float:
    requests = plan_cohort(n, seed, overrides={"size_xy": (256, 256), "n_slices": 200, "spacing_mm": (1.4, 1.4, 1.25)})
    with tempfile.TemporaryDirectory(prefix="pelabelup-bench-") as out:
        started = time.perf_counter()
        generate_cohort(out, requests, layout=layout, workers=workers)
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6, help="cases per run (default 6)")
    parser.add_argument("--layout", choices=LAYOUTS, default="nifti")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"cohort of {args.n} phantoms 256x256x200 ({args.layout} layout), written to a temporary folder")
    results = {}
    for workers in sorted({1, cores}):
        seconds = timed_run(args.n, workers, args.layout, args.seed)
        results[workers] = seconds
        print(f"workers={workers}: {seconds:.1f} s, {60.0 * args.n / seconds:.1f} cases/min, "
              f"{seconds / args.n:.2f} s/case")
    if len(results) > 1:
        print(f"speed-up with {cores} workers: {results[1] / results[cores]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
