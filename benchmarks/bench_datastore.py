"""Speed of "Export to training": one export, a re-export of the same image, the write-lock hold time, and
several processes exporting into one datastore at once.

    python benchmarks/bench_datastore.py                    # 512x512x300 int16 CTPA-sized image
    python benchmarks/bench_datastore.py --slices 100 --processes 3 --exports 4

The image is CT-like (smooth tissue, air, noise) so that it compresses like a real scan. The write lock
(SQLite ``BEGIN IMMEDIATE``) is what serialises concurrent exports: the time it is held per export bounds
how many exports per second a datastore takes, whatever the image size.
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

import numpy as np

from PELabelUpLib.datastore import Datastore, image_hash
from PELabelUpLib.geometry import Geometry
from PELabelUpLib.volume import CTVolume

REVIEW = {"reviewer": "bench", "study_label": True, "label_decision": "confirmed", "model_versions": {"m": "1"}}


def ct_like(size_xy: int, n_slices: int, seed: int) -> CTVolume:
    g = Geometry(size=(size_xy, size_xy, n_slices), spacing_mm=(0.75, 0.75, 1.0), origin_mm=(-190.0, -190.0, -300.0))
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:n_slices, :size_xy, :size_xy]
    body = ((x - size_xy / 2) ** 2 / (0.42 * size_xy) ** 2 + (y - size_xy / 2) ** 2 / (0.3 * size_xy) ** 2) < 1
    hu = np.where(body, 40, -1000).astype(np.int16) + np.zeros((n_slices, 1, 1), np.int16)
    hu += rng.normal(0, 20, hu.shape).astype(np.int16)
    return CTVolume(hu=hu, geometry=g)


def mask_for(volume: CTVolume) -> np.ndarray:
    mask = np.zeros(volume.geometry.shape_zyx, np.uint8)
    z, y, x = (s // 2 for s in mask.shape)
    mask[z - 5 : z + 5, y - 8 : y + 8, x - 8 : x + 8] = 1
    return mask


def timed_export(store_root: Path, case_id: str, volume: CTVolume) -> tuple[float, float]:
    """(export seconds, seconds the write lock was held)."""
    marks: dict[str, float] = {}
    store = Datastore(store_root, on_stage=lambda stage: marks.setdefault(stage, time.perf_counter()))
    mask = mask_for(volume)
    started = time.perf_counter()
    store.export(case_id, volume, mask, original_masks={"pseudomask": mask}, **REVIEW)
    ended = time.perf_counter()
    return ended - started, ended - marks["locked"]


def child(root: str, writer: int, n_exports: int, size_xy: int, n_slices: int, go: str) -> None:
    volume = ct_like(size_xy, n_slices, seed=100 + writer)
    store = Datastore(root)
    while not Path(go).exists():
        time.sleep(0.005)
    for n in range(n_exports):
        store.export(f"case-{writer}-{n % 2}", volume, mask_for(volume), **REVIEW)
    sys.stdout.write(json.dumps({"writer": writer, "done": time.time()}) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-xy", type=int, default=512)
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--processes", type=int, default=3, help="concurrent exporting processes (0: skip)")
    p.add_argument("--exports", type=int, default=4, help="exports per process")
    p.add_argument("--concurrent-slices", type=int, default=40, help="slices of each concurrent export's image")
    p.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        root, writer, n, size_xy, n_slices, go = args.child
        child(root, int(writer), int(n), int(size_xy), int(n_slices), go)
        return

    volume = ct_like(args.size_xy, args.slices, seed=0)
    megabytes = volume.hu.nbytes / 2**20
    with tempfile.TemporaryDirectory(prefix="bench-datastore-") as tmp:
        root = Path(tmp) / "store"
        started = time.perf_counter()
        image_hash(volume)
        hash_s = time.perf_counter() - started
        first_s, first_lock_s = timed_export(root, "case-a", volume)
        again_s, again_lock_s = timed_export(root, "case-a", volume)
        stored_mb = sum(f.stat().st_size for f in (root / "images").rglob("*.nii.gz")) / 2**20
        print(f"image {args.size_xy}x{args.size_xy}x{args.slices} int16 ({megabytes:.0f} MiB, stored {stored_mb:.1f} MiB)")
        print(f"  content hash            {hash_s:6.2f} s")
        print(f"  first export            {first_s:6.2f} s   (write lock held {first_lock_s * 1000:.0f} ms)")
        print(f"  re-export, same image   {again_s:6.2f} s   (write lock held {again_lock_s * 1000:.0f} ms)")

        if args.processes:
            root2 = Path(tmp) / "store2"
            Datastore(root2)
            go = Path(tmp) / "go"
            workers = [subprocess.Popen([sys.executable, __file__, "--child", str(root2), str(w), str(args.exports),
                                         str(args.size_xy), str(args.concurrent_slices), str(go)],
                                        stdout=subprocess.PIPE, text=True) for w in range(args.processes)]
            time.sleep(5.0)  # let them import and build their images
            started = time.time()
            go.write_text("go")
            ends = [json.loads(w.communicate()[0])["done"] for w in workers]
            store = Datastore(root2)
            rows = sum(len(store.history(c)) for c in store.case_ids())
            total = args.processes * args.exports
            print(f"{args.processes} processes x {args.exports} exports of {args.size_xy}x{args.size_xy}x"
                  f"{args.concurrent_slices}: {rows}/{total} indexed, {max(ends) - started:.2f} s wall, "
                  f"median process {statistics.median(ends) - started:.2f} s, problems: {store.verify() or 'none'}")


if __name__ == "__main__":
    main()
