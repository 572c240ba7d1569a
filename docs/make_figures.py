"""Regenerate the README's overview pictures of the embedded data and of the demo's analysis.

    python docs/make_figures.py    # docs/images/{phantom,hybrid,demo}_overview.png, given_territory.png

The hybrid pictures need the real CTA crop beside the repository (``../shared/data/real-cta``, or
``PELABELUP_REAL_CTA``); they are skipped with a message when the crop is absent. ``given_territory.png``
analyses one hybrid case with the bundled models twice: on the artery model's territory, and with the crop's
artery mask given (``pelabelup analyze --arteries``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from PELabelUpLib.analysis.run import analyze
from PELabelUpLib.demo import run_demo
from PELabelUpLib.io import read_label_file, write_volume
from PELabelUpLib.render import overview_point, render_overview
from PELabelUpLib.synthetic.hybrid import make_hybrid_case
from PELabelUpLib.synthetic.phantom import generate_phantom

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"


def demo_figure() -> None:
    """The overview ``make demo`` draws: the sample case analysed by the bundled models (CPU)."""
    with tempfile.TemporaryDirectory(prefix="pelabelup-figure-") as tmp:
        shutil.copy(run_demo(tmp, device="cpu").overview, IMAGES / "demo_overview.png")


def given_territory_figure(hybrid, artery_mask: Path) -> None:
    """One hybrid case analysed on the artery model's territory (top) and on the given artery mask (bottom)."""
    from matplotlib import image

    point = overview_point(hybrid.ct.hu.shape, {"emboli": hybrid.emboli})
    with tempfile.TemporaryDirectory(prefix="pelabelup-figure-") as tmp:
        ct = write_volume(hybrid.ct, Path(tmp) / "ct.nii.gz")
        panels = []
        for name, arteries, what in (("model", None, "the artery model's territory"),
                                     ("given", artery_mask, "the artery mask given (--arteries)")):
            out = analyze(ct, Path(tmp) / name, device="cpu", arteries=arteries)
            masks = {f: read_label_file(out / f"{f}.nii.gz")[0] for f in ("arteries", "pseudomask")}
            found = sum(bool(np.any(masks["pseudomask"][hybrid.emboli == label]))
                        for label in range(1, len(hybrid.emboli_list) + 1))
            panels.append(render_overview(
                hybrid.ct, {"emboli": hybrid.emboli, "territory": masks["arteries"], "pseudo-mask": masks["pseudomask"]},
                Path(tmp) / f"{name}.png", point_zyx=point,
                title=f"hybrid case (seed 3), {what}: {found} of {len(hybrid.emboli_list)} emboli found"))
        image.imsave(IMAGES / "given_territory.png", np.concatenate([image.imread(p) for p in panels], axis=0))


def main() -> int:
    demo_figure()
    phantom = generate_phantom(31, size_xy=320, n_slices=220, spacing_mm=(1.1, 1.1, 1.25), positive=True, n_emboli=5)
    kinds = ", ".join(f"{e.kind} {e.level} {e.side}" for e in phantom.emboli_list)
    render_overview(phantom.ct, {"arteries": phantom.arteries, "emboli": phantom.emboli},
                    IMAGES / "phantom_overview.png", title=f"synthetic CTPA phantom (seed 31): {kinds}")
    real = Path(os.environ.get("PELABELUP_REAL_CTA", HERE.parents[1] / "shared" / "data" / "real-cta"))
    if not (real / "cta_crop.nii.gz").is_file():
        print(f"no real CTA crop in {real}: hybrid picture skipped", file=sys.stderr)
        return 0
    hybrid = make_hybrid_case(real / "cta_crop.nii.gz", real / "pulmonary_artery.nii.gz", 3, n_emboli=3)
    kinds = ", ".join(f"{e.kind} {e.level} {e.side}" for e in hybrid.emboli_list)
    render_overview(hybrid.ct, {"arteries": hybrid.arteries, "emboli": hybrid.emboli},
                    IMAGES / "hybrid_overview.png", title=f"real CTA crop with implanted emboli (seed 3): {kinds}")
    given_territory_figure(hybrid, real / "pulmonary_artery.nii.gz")
    print(f"written to {IMAGES}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
