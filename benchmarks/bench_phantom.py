"""Speed and memory of the synthetic CTPA phantom generator, on one core.

    python benchmarks/bench_phantom.py            # 256x256x200 over 3 seeds, then 512x512x300 once
    python benchmarks/bench_phantom.py --seeds 5 --no-large

Each run happens in a fresh child process with one thread (``OMP_NUM_THREADS=1`` and friends set before
numpy is imported), so the peak resident memory reported is that of one generation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
SIZES = {"256x256x200": {"size_xy": 256, "n_slices": 200, "spacing_mm": (1.4, 1.4, 1.25)},
         "512x512x300": {"size_xy": 512, "n_slices": 300, "spacing_mm": (0.75, 0.75, 1.0)}}


def _child(size: str, seed: int) -> None:
    import resource
    import time

    from PELabelUpLib.synthetic.phantom import generate_phantom

    started, cpu_started = time.perf_counter(), time.process_time()
    case = generate_phantom(seed, positive=True, **SIZES[size])
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"size": size, "seed": seed, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": peak_mib,
                      "emboli": len(case.emboli_list)}))


def _run(size: str, seed: int) -> dict:
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
    out = subprocess.run([sys.executable, __file__, "--child", size, str(seed)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds timed at 256x256x200 (default 3)")
    parser.add_argument("--no-large", action="store_true", help="skip the 512x512x300 run")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return 0
    runs = [_run("256x256x200", seed) for seed in range(1, args.seeds + 1)]
    for r in runs:
        print(f"256x256x200 seed {r['seed']}: {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB, {r['emboli']} emboli")
    print(f"256x256x200: median {statistics.median(r['seconds'] for r in runs):.2f} s wall, "
          f"{statistics.median(r['cpu_seconds'] for r in runs):.2f} s CPU over {len(runs)} seeds (one thread), "
          f"peak RSS {max(r['peak_rss_mib'] for r in runs):.0f} MiB")
    if not args.no_large:
        r = _run("512x512x300", 1)
        print(f"512x512x300: {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU (one thread), "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB")
    print(f"(load average when done: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: wall time includes waiting "
          "for a CPU on a shared machine, CPU time does not)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
