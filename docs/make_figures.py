"""Regenerate the README's overview pictures of the embedded data and of the demo's analysis.

    python docs/make_figures.py            # writes docs/images/{phantom,hybrid,demo}_overview.png

The hybrid picture needs the real CTA crop beside the repository (``../shared/data/real-cta``, or
``PELABELUP_REAL_CTA``); it is skipped with a message when the crop is absent.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from PELabelUpLib.demo import run_demo
from PELabelUpLib.render import render_overview
from PELabelUpLib.synthetic.hybrid import make_hybrid_case
from PELabelUpLib.synthetic.phantom import generate_phantom

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"


def demo_figure() -> None:
    """The overview ``make demo`` draws: the sample case analysed by the bundled models (CPU)."""
    with tempfile.TemporaryDirectory(prefix="pelabelup-figure-") as tmp:
        shutil.copy(run_demo(tmp, device="cpu").overview, IMAGES / "demo_overview.png")


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
    print(f"written to {IMAGES}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
