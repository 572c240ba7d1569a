"""Per-stage time and peak memory of ``analyze`` on one study (default 512 x 512 x 300, CPU).

    python benchmarks/bench_analyze.py                          # 512x512x300 phantom, CPU, bundled models
    python benchmarks/bench_analyze.py --size 256 256 150 --threads 2 --explainer ig
    python benchmarks/bench_analyze.py --device cuda --repeat 2 # on a GPU machine (mixed precision); 2nd run warm
    python benchmarks/bench_analyze.py --size 128 128 60 --with-segmenter   # random segmenter too
    python benchmarks/bench_analyze.py --precision float32 --no-tracemalloc  # full precision, clean timings
    python benchmarks/bench_analyze.py --given-arteries --no-tracemalloc     # analyze --arteries: the phantom's mask
    python benchmarks/bench_analyze.py --dicom --no-tracemalloc              # a DICOM series in, a DICOM SEG out too

The study is a synthetic CTPA phantom with emboli (``synthetic.generate_phantom``) written as NIfTI, read back
by ``analyze`` like any input. Models: the bundled ones (``Resources/Models``, or ``--models-dir``) when
present, else random-weight models of the bundled architectures with their default preprocessing (written to
a temporary folder); the output says which. Random weights make the stages' amounts of work arbitrary (how
many slices are explained, how large the territory is), so read those figures as an order of magnitude.

The chain runs with ``min_study_probability`` 0, so the pseudo-mask and the segmenter always run (the worst
case). Per stage: seconds (``result.json`` ``timings_s``), the peak of numpy/Python allocations within the stage
(tracemalloc, reset at each stage start), the process's resident-set high-water mark so far
(``resource.getrusage``; it includes torch's CPU buffers and the imported libraries, which tracemalloc does
not see; the phantom is made in a child process so it does not count) and, on CUDA,
``torch.cuda.max_memory_allocated`` within the stage. tracemalloc slows Python-heavy work (the ``models`` stage
is mostly importing MONAI: about 7 s traced against 1.5 s untraced); ``--no-tracemalloc`` leaves it off for clean
timings (the numpy column is then empty, the resident-set figures stay).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch

from PELabelUpLib.analysis.run import analyze
from PELabelUpLib.io import write_dicom_series, write_volume
from PELabelUpLib.labelup.pipeline import LabelUpSettings
from PELabelUpLib.models.artery import ArteryPreprocessing
from PELabelUpLib.models.folder import save_model_folder
from PELabelUpLib.models.networks import build_network
from PELabelUpLib.models.registry import MODEL_TASKS, ModelNotFoundError, find_models
from PELabelUpLib.models.segmenter import SegmenterPreprocessing
from PELabelUpLib.models.slices import SliceSpec
from PELabelUpLib.precision import INFERENCE_PRECISIONS
from PELabelUpLib.synthetic.phantom import generate_phantom

# The bundled architectures, as the trainers write them (training/*/train.py defaults).
BUNDLED_ARCHITECTURES = {
    "artery": ({"name": "ArteryUNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 1,
                                                 "channels": [16, 32, 64, 128], "strides": [2, 2, 2],
                                                 "num_res_units": 1, "norm": "instance"}},
               ArteryPreprocessing().as_metadata()),
    "classifier": ({"name": "SliceClassifier", "kwargs": {"in_channels": SliceSpec().channels,
                                                          "widths": [16, 32, 64, 96]}},
                   SliceSpec().as_metadata()),
    "segmenter": ({"name": "DynUNet", "kwargs": {"spatial_dims": 3, "in_channels": 2, "out_channels": 1,
                                                 "kernel_size": [3, 3, 3, 3], "strides": [1, 2, 2, 2],
                                                 "upsample_kernel_size": [2, 2, 2], "filters": [16, 32, 64, 128],
                                                 "res_block": True}},
                  SegmenterPreprocessing().as_metadata()),
}


def random_models(folder: Path, with_segmenter: bool) -> Path:
    torch.manual_seed(0)
    for task, (spec, prep) in BUNDLED_ARCHITECTURES.items():
        if task == "segmenter" and not with_segmenter:
            continue
        name = MODEL_TASKS[task].name
        save_model_folder(folder / name, build_network(spec), {
            "name": name, "version": "0.0.0-random", "task": task, "network": spec, "preprocessing": prep})
    return folder


def make_study(path: Path, seed: int, size: tuple[int, int, int], spacing_mm: tuple[float, float, float],
               arteries_path: Path | None = None) -> None:
    """The phantom written to ``path``: a NIfTI file, or a DICOM series when ``path`` has no suffix (a folder)."""
    case = generate_phantom(seed, size_xy=size[:2], n_slices=size[2], spacing_mm=spacing_mm, positive=True)
    if path.suffix:
        write_volume(case.ct, path)
    else:
        write_dicom_series(case.ct, path)
    if arteries_path is not None:
        write_volume(case.arteries, arteries_path, case.ct.geometry)


class StageMemory:
    """Progress callback that closes a stage's memory figures when the next stage starts."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.stage, self.rows = cuda, None, {}

    def _close(self) -> None:
        if self.stage is None:
            return
        tracing = tracemalloc.is_tracing()
        row = self.rows.setdefault(self.stage, {"tracemalloc_peak_mb": 0.0 if tracing else float("nan")})
        if tracing:
            row["tracemalloc_peak_mb"] = max(row["tracemalloc_peak_mb"], tracemalloc.get_traced_memory()[1] / 2**20)
        row["rss_high_water_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.cuda:
            row["cuda_peak_mb"] = max(row.get("cuda_peak_mb", 0.0), torch.cuda.max_memory_allocated() / 2**20)

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if stage != self.stage:
            self._close()
            if tracemalloc.is_tracing():
                tracemalloc.reset_peak()
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            self.stage = stage
        print(f"  {fraction:5.1%} {stage:<10} {message}", file=sys.stderr, flush=True)

    def finish(self) -> dict:
        self._close()
        return self.rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 1.0), metavar=("X", "Y", "Z"))
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--explainer", default=LabelUpSettings.explainer)
    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS, default="auto",
                        help="auto: mixed precision where the hardware has it natively; float32 (default: auto)")
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="do not trace numpy/Python allocations (they slow the Python-heavy stages)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the bundled one)")
    parser.add_argument("--with-segmenter", action="store_true",
                        help="random models: add a random segmenter (none is bundled yet; it is slow on CPU)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--given-arteries", action="store_true",
                        help="give the phantom's own artery mask (analyze --arteries) instead of running the artery model")
    parser.add_argument("--dicom", action="store_true",
                        help="write the phantom as a DICOM series (the load stage reads its files; the outputs "
                             "then include the DICOM SEG segmentation.dcm)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="analyse the study this many times in one process (the table is the last run's)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="pelabelup-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        study = work / ("study-dicom" if args.dicom else "study.nii.gz")
        given = work / "arteries.nii.gz" if args.given_arteries else None
        # a child process makes the phantom, so this process's memory high-water mark is the analysis's alone
        maker = multiprocessing.get_context("spawn").Process(
            target=make_study, args=(study, args.seed, tuple(args.size), tuple(args.spacing), given))
        maker.start()
        maker.join()
        if maker.exitcode != 0:
            raise SystemExit(f"making the phantom failed (exit {maker.exitcode})")
        print(f"study: phantom {args.seed}, {'x'.join(map(str, args.size))} voxels, spacing {args.spacing} mm, "
              f"with emboli ({time.perf_counter() - t0:.0f} s to make{', as a DICOM series' if args.dicom else ''})"
              + ("; its artery mask given (--arteries)" if given else ""))
        try:
            find_models(models_dir=args.models_dir)
            models_dir, which = args.models_dir, "bundled (trained) models"
        except ModelNotFoundError:
            models_dir = random_models(work / "models", with_segmenter=args.with_segmenter)
            which = "RANDOM-WEIGHT models of the bundled architectures (no bundled models found)"
        print(f"models: {which}; device {args.device}, torch threads {torch.get_num_threads()}")

        cuda = args.device != "cpu" and torch.cuda.is_available()
        # every stage runs whatever the study probability (a study read as negative skips the segmenter)
        settings = LabelUpSettings(min_study_probability=0.0)
        walls = []
        for run in range(args.repeat):
            memory = StageMemory(cuda=cuda)
            if not args.no_tracemalloc:
                tracemalloc.start()
            started = time.perf_counter()
            out = analyze(study, work / f"out{run}", device=args.device, explainer=args.explainer,
                          precision=args.precision, models_dir=models_dir, progress=memory, settings=settings,
                          arteries=given)
            walls.append(time.perf_counter() - started)
            tracemalloc.stop()
            rows = memory.finish()
            record = json.loads((out / "result.json").read_text())
            if args.repeat > 1:
                print(f"run {run + 1}: {walls[-1]:.1f} s; " + ", ".join(
                    f"{stage} {seconds:.2f}" for stage, seconds in record["timings_s"].items() if stage != "total"))
        wall = walls[-1]

    timings = record["timings_s"]
    stage_of = {"models": "models", "load": "load", "arteries": "arteries", "classifier": "classifier",
                "explain_and_pseudomask": "pseudomask", "segmenter": "segmenter", "write": "write"}
    print(f"\n{'stage':<24}{'seconds':>9}{'numpy peak MB':>15}{'RSS high-water MB':>19}"
          + (f"{'CUDA peak MB':>14}" if memory.cuda else ""))
    for key, stage in stage_of.items():
        row = rows.get(stage, {})
        line = (f"{key:<24}{timings.get(key, float('nan')):>9.2f}{row.get('tracemalloc_peak_mb', float('nan')):>15.0f}"
                f"{row.get('rss_high_water_mb', float('nan')):>19.0f}")
        if memory.cuda:
            line += f"{row.get('cuda_peak_mb', float('nan')):>14.0f}"
        print(line)
    if len(walls) > 1:
        print("wall time of each run: " + ", ".join(f"{w:.1f}" for w in walls) + " s (the table: the last run)")
    print(f"{'total (result.json)':<24}{timings['total']:>9.2f}\nwall time of analyze(): {wall:.1f} s; "
          f"PE probability {record['pe_probability']:.3f}, "
          f"{sum(e['source'] == 'pseudomask' for e in record['emboli'])} pseudo-mask emboli; "
          f"segmentation: {record['segmentation_source']}; device {record['device']['device']}, precision "
          f"{record['device']['precision']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
