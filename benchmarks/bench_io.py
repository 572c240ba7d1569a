"""Write and read speed of every CT format of ``PELabelUpLib.io`` on a CT-sized volume (CPU, one thread).

Usage: ``python benchmarks/bench_io.py [--size 512] [--slices 200] [--repeats 2]``.
Prints, per format, the median wall time of ``write`` and of ``load_ct`` over the repeats, the throughput
in MB/s of int16 voxels and the size on disk; then the Slicer ``.seg.nrrd`` writer on three segments shaped
like an analysis's (pseudo-mask, segmentation, artery territory) at gzip levels 1 (the default) and 6. Files go
to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from PELabelUpLib.geometry import Geometry
from PELabelUpLib.io import load_ct, write_dicom_series, write_rspect_study, write_volume
from PELabelUpLib.io.seg_nrrd import Segment, write_seg_nrrd
from PELabelUpLib.volume import CTVolume


def ct_volume(size: int, slices: int) -> CTVolume:
    """A chest-CT-like int16 volume: air, an elliptic body, lungs, noise (values -1024..~400 HU)."""
    rng = np.random.default_rng(0)
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    plane = np.full((size, size), -1000.0)
    plane[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = 40.0
    plane[((np.abs(x) - 0.4) / 0.3) ** 2 + (y / 0.5) ** 2 < 1] = -850.0
    hu = plane[None] + rng.normal(0, 15, (slices, size, size))
    geometry = Geometry((size, size, slices), (0.7, 0.7, 1.0), (-179.2, -179.2, -300.0))
    return CTVolume(np.clip(np.rint(hu), -1024, 3071).astype(np.int16), geometry)


def _timed(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _disk_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="rows = columns")
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    volume = ct_volume(args.size, args.slices)
    megabytes = volume.hu.nbytes / 1e6
    print(
        f"volume {args.size}x{args.size}x{args.slices} int16 = {megabytes:.0f} MB | median of {args.repeats}"
    )
    print(f"{'format':<22}{'write s':>9}{'read s':>9}{'write MB/s':>12}{'read MB/s':>11}{'disk MB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        counter = iter(range(10**6))
        cases: dict[str, tuple[Callable[[Path], object], Callable[[Path], Path]]] = {
            "NIfTI .nii.gz": (lambda p: write_volume(volume, p / "ct.nii.gz"), lambda p: p / "ct.nii.gz"),
            "NIfTI .nii": (lambda p: write_volume(volume, p / "ct.nii"), lambda p: p / "ct.nii"),
            "NRRD .nrrd (gzip)": (lambda p: write_volume(volume, p / "ct.nrrd"), lambda p: p / "ct.nrrd"),
            "MetaImage .mha (zlib)": (lambda p: write_volume(volume, p / "ct.mha"), lambda p: p / "ct.mha"),
            "MetaImage .mha (raw)": (lambda p: write_volume(volume, p / "ct.mha", compress=False), lambda p: p / "ct.mha"),
            "DICOM series": (lambda p: write_dicom_series(volume, p / "dicom"), lambda p: p / "dicom"),
            "RSPECT study": (
                lambda p: write_rspect_study(p, volume, [False] * args.slices, {}, rng=np.random.default_rng(0)),
                lambda p: next((p / "train").glob("*/*")),
            ),
        }  # fmt: skip
        for name, (write, target) in cases.items():
            folders: list[Path] = []

            def fresh_write(write: Callable[[Path], object] = write, folders: list[Path] = folders) -> None:
                folder = root / f"run{next(counter)}"
                folder.mkdir()
                folders.append(folder)
                write(folder)

            write_s = _timed(fresh_write, args.repeats)
            path = target(folders[-1])
            read_s = _timed(lambda path=path: load_ct(path), args.repeats)
            back = load_ct(path)
            assert np.array_equal(back.hu, volume.hu), f"{name}: HU changed in the round trip"
            print(
                f"{name:<22}{write_s:>9.2f}{read_s:>9.2f}{megabytes / write_s:>12.0f}"
                f"{megabytes / read_s:>11.0f}{_disk_mb(path):>9.1f}"
            )
        segments = analysis_like_segments(volume)
        for level in (1, 6):
            out = root / f"s{level}.seg.nrrd"
            write_s = _timed(lambda out=out, level=level: write_seg_nrrd(segments, volume.geometry, out,
                                                                          compresslevel=level), args.repeats)
            print(f"{'seg.nrrd, gzip ' + str(level):<22}{write_s:>9.2f}{'':>9}{'':>12}{'':>11}{_disk_mb(out):>9.2f}")


def analysis_like_segments(volume: CTVolume) -> list[Segment]:
    """Three overlapping masks the size of an analysis's: a tree-like territory, two small clot sets."""
    z, y, x = volume.hu.shape
    zz, yy, xx = np.ogrid[:z, :y, :x]
    territory = ((yy - y / 2) ** 2 + (xx - x / 2) ** 2 < (x / 8) ** 2) & (zz > z // 4) & (zz < 3 * z // 4)
    clot = territory & ((yy - y / 2) ** 2 + (xx - x / 2) ** 2 < (x / 40) ** 2) & (zz > z // 2 - 5) & (zz < z // 2 + 5)
    return [Segment(segment_id="pseudo", name="PE pseudo-mask", mask=clot, label_value=1),
            Segment(segment_id="seg", name="PE segmenter", mask=clot, label_value=2),
            Segment(segment_id="arteries", name="Pulmonary arteries", mask=territory, label_value=3)]


if __name__ == "__main__":
    main()
