"""What the long-lived worker saves: ``pelabelup analyze`` in a fresh process per study against one
``pelabelup serve`` process for all of them, on the same CT, with the bundled models.

Usage: ``python benchmarks/bench_serve.py CT [--n 3] [--device cpu|cuda|auto]``.
Prints the wall time of each fresh ``analyze`` process, then the worker's time to ``ready`` (imports and models)
and the wall time of each request (from the line before it ends to its ``done`` line), their medians and the
ratio. Outputs go to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "PELabelUpLib.cli.main"]


def fresh_processes(ct: Path, work: Path, n: int, device: str) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        subprocess.run([*CLI, "analyze", str(ct), "--out", str(work / f"analyze-{i}"), "--device", device,
                        "--progress", "none"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def one_worker(ct: Path, work: Path, n: int, device: str) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([*CLI, "serve", "--device", device], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    for i in range(n):
        proc.stdin.write(json.dumps({"input": str(ct), "out": str(work / f"serve-{i}")}) + "\n")
    proc.stdin.close()
    ready, ends = None, []
    for line in proc.stdout:
        event = json.loads(line)
        if event["stage"] == "ready":
            ready = time.perf_counter() - t0
        elif event["stage"] in ("done", "failed"):
            if event["stage"] == "failed":
                raise SystemExit(f"request failed: {event['message']}")
            ends.append(time.perf_counter() - t0)
    if proc.wait() != 0 or ready is None:
        raise SystemExit(f"pelabelup serve ended with status {proc.returncode}")
    starts = [ready, *ends[:-1]]
    return ready, [end - start for start, end in zip(starts, ends, strict=True)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("ct", type=Path, help="a CT that pelabelup analyze reads")
    p.add_argument("--n", type=int, default=3, help="analyses each way (default 3)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        fresh = fresh_processes(args.ct, Path(tmp), args.n, args.device)
        ready, requests = one_worker(args.ct, Path(tmp), args.n, args.device)
    print(f"fresh analyze processes: {', '.join(f'{t:.1f}' for t in fresh)} s (median {statistics.median(fresh):.1f})")
    print(f"serve: ready after {ready:.1f} s; requests {', '.join(f'{t:.1f}' for t in requests)} s "
          f"(median {statistics.median(requests):.1f})")
    print(f"a request in the worker takes {statistics.median(requests) / statistics.median(fresh):.2f} of a fresh "
          f"process (medians); {args.n} studies: {sum(fresh):.1f} s fresh, {ready + sum(requests):.1f} s in one worker")


if __name__ == "__main__":
    main()
