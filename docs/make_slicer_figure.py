"""Regenerate the README's picture of a PELabelUp review in a 3D Slicer scene, rendered headless.

    python docs/make_slicer_figure.py            # writes docs/images/slicer_scene.png and slicer_3d.png

A synthetic phantom (seed 3, never trained on) is written as a CT and analysed with the bundled models
(:func:`PELabelUpLib.analysis.run.analyze`, the ``pelabelup analyze`` contract, on the CPU); the analysis folder
is loaded into a real MRML scene with Slicer's module logics (``PELabelUpLib.mrml``), and the slice views are
rendered by Slicer's own slice logics: CT background, heatmap foreground, segment outlines. The slice
probability plot and the emboli list are drawn from the scene's table nodes. The segmentation's closed surfaces
(what the 3-D view shows) are rendered from the front into a second picture (:mod:`PELabelUpLib.mrml.render3d`).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from PELabelUpLib.analysis.run import analyze
from PELabelUpLib.io import write_volume
from PELabelUpLib.mrml import (
    PE_PSEUDOMASK,
    PULMONARY_ARTERIES,
    create_headless_scene,
    embolus_ras,
    jump_slices_to,
    load_analysis,
)
from PELabelUpLib.mrml.grid import ijk_to_ras
from PELabelUpLib.mrml.render import over_black, render_views, write_png
from PELabelUpLib.mrml.render3d import render_surfaces
from PELabelUpLib.synthetic.phantom import generate_phantom

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "images" / "slicer_scene.png"
OUTPUT_3D = HERE / "images" / "slicer_3d.png"
SEED = 3
HEAT_THRESHOLD = 0.15
HEAT_OPACITY = 0.55
ZOOM_FOV_MM = 100.0
AXIAL_FOV_MM = 320.0


def write_analysis(root: Path) -> Path:
    """CT of a phantom and its analysis folder by the bundled models."""
    case = generate_phantom(SEED, positive=True, size_xy=256, n_slices=120)
    write_volume(case.ct, root / "phantom.nii.gz")
    return analyze(root / "phantom.nii.gz", root / "analysis", device="cpu")


def render_scene(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Load the analysis into a headless scene; render the three views (sagittal and coronal zoomed)."""
    logics = create_headless_scene(view_size_px=(540, 540))
    for name in ("Yellow", "Green"):
        logics.slice_logics[name].ResizeSliceNode(360, 360)
    review = load_analysis(logics, folder, heat_threshold=HEAT_THRESHOLD, heat_opacity=HEAT_OPACITY)
    centre = embolus_ras(review.emboli_table, 0)
    for name, fov_mm in (("Red", AXIAL_FOV_MM), ("Yellow", ZOOM_FOV_MM), ("Green", ZOOM_FOV_MM)):
        node = logics.slice_logics[name].GetSliceNode()
        node.SetFieldOfView(fov_mm, fov_mm, node.GetFieldOfView()[2])
    jump_slices_to(logics.scene, centre, centered=True, layout_names=["Yellow", "Green"])
    jump_slices_to(logics.scene, centre, centered=False, layout_names=["Red"])  # the whole chest, at the clot
    fit_views_keep_offset(logics)
    pictures = render_views(logics, ["Red", "Yellow", "Green"], segmentation_node=review.segmentation,
                            reference_volume=review.ct,
                            segment_ids=[PULMONARY_ARTERIES.segment_id, PE_PSEUDOMASK.segment_id])
    table = review.slice_table.GetTable()
    emboli = review.emboli_table.GetTable()
    models = json.loads((folder / "result.json").read_text())["models"]
    facts = {
        "models": ", ".join(f"{m['name']} {m['version']}" for m in models),
        "pe_probability": review.record.pe_probability,
        "position_mm": [table.GetValueByName(k, "Position (mm)").ToDouble() for k in range(table.GetNumberOfRows())],
        "probability": [table.GetValueByName(k, "PE probability").ToDouble() for k in range(table.GetNumberOfRows())],
        "current_mm": float(np.dot(centre, _k_unit(review.ct))),
        "emboli": [{col: emboli.GetValueByName(r, col).ToString() for col in
                    ("Source", "Volume (mm3)", "Side", "Peak heat", "Slice k", "LPS (mm)")} for r in range(emboli.GetNumberOfRows())],
    }
    pictures["3d"] = render_surfaces(review.segmentation, size_px=(720, 420), view="anterior", zoom=1.35)
    return {name: over_black(p) for name, p in pictures.items()}, facts


def fit_views_keep_offset(logics) -> None:
    """Re-centre the axial view on the volume (its offset, the clot's slice, is kept)."""
    red = logics.slice_logics["Red"]
    offset = red.GetSliceOffset()
    fov = red.GetSliceNode().GetFieldOfView()
    red.FitSliceToAll()
    red.GetSliceNode().SetFieldOfView(AXIAL_FOV_MM, AXIAL_FOV_MM, fov[2])
    red.SetSliceOffset(offset)


def _k_unit(volume_node) -> np.ndarray:
    k_axis = ijk_to_ras(volume_node)[:3, 2]
    return k_axis / np.linalg.norm(k_axis)


def _style(ax, title: str) -> None:
    ax.set_title(title, color="white", fontsize=10)
    ax.tick_params(colors="white", labelsize=8)
    for spine in ax.spines.values():
        spine.set_color("#666666")


def compose(pictures: dict[str, np.ndarray], facts: dict, path: Path) -> None:
    """Lay the rendered views, the slice plot, the emboli rows and the legends out in one PNG."""
    fig = Figure(figsize=(13.0, 9.0), dpi=100, facecolor="black")
    white = {"color": "white", "fontsize": 10}
    fig.suptitle("PELabelUp review in a 3D Slicer scene, rendered headless by Slicer's own slice logics "
                 f"(study PE probability {facts['pe_probability']:.2f})", color="white", fontsize=13, y=0.975)
    fig.text(0.5, 0.935, f"synthetic study (seed {SEED}) analysed by the bundled models: {facts['models']}",
             ha="center", color="#ffcc66", fontsize=9.5)
    views = [("Red", (0.01, 0.31, 0.42, 0.6), f"axial (Red), {AXIAL_FOV_MM:.0f} mm"),
             ("Green", (0.445, 0.38, 0.27, 0.5), f"coronal (Green), {ZOOM_FOV_MM:.0f} mm"),
             ("Yellow", (0.725, 0.38, 0.27, 0.5), f"sagittal (Yellow), {ZOOM_FOV_MM:.0f} mm")]
    for name, rect, title in views:
        ax = fig.add_axes(rect)
        ax.imshow(pictures[name], interpolation="nearest")
        ax.set_title(title, **white)
        ax.set_axis_off()
    handles = [Patch(facecolor=PE_PSEUDOMASK.color, label=f"{PE_PSEUDOMASK.name} (SNOMED CT 55584005 Embolus)"),
               Patch(facecolor=PULMONARY_ARTERIES.color, label=f"{PULMONARY_ARTERIES.name} (SNOMED CT 81040000)")]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.45, 0.37), fontsize=9, facecolor="#222222",
               labelcolor="white", edgecolor="#444444", title="segment outlines (one segmentation node)",
               title_fontsize=9).get_title().set_color("white")

    plot = fig.add_axes((0.06, 0.08, 0.5, 0.19), facecolor="#111111")
    plot.plot(facts["position_mm"], facts["probability"], color="#e85a19", marker="o", markersize=2.5, lw=1.2)
    plot.axvline(facts["current_mm"], color="#20d0ff", lw=1.0, ls="--", label="slice shown (largest embolus)")
    plot.set_ylim(0, 1)
    plot.set_xlabel("position along the volume's slice axis (mm)", **white)
    plot.set_ylabel("PE probability", **white)
    _style(plot, "per-slice plot (vtkMRMLPlotChartNode): picking a point jumps the views there")
    plot.legend(loc="upper left", fontsize=8, facecolor="#222222", labelcolor="white", edgecolor="#444444")

    rows = [f"{e['Source']:<11}{float(e['Volume (mm3)']):7.0f}  {e['Side']:<7} {float(e['Peak heat']):5.2f}  "
            f"{e['Slice k']:>5}" for e in facts["emboli"]]
    fig.text(0.62, 0.27, "emboli table (vtkMRMLTableNode);\na row centres the views on its embolus\n\n"
             "source         mm3  side     heat  slice\n" + "\n".join(rows), va="top", ha="left", family="monospace", **white)
    bar = fig.add_axes((0.62, 0.1, 0.33, 0.018))
    bar.imshow(colormaps["inferno"](np.linspace(0, 1, 256))[None], aspect="auto", extent=(0, 1, 0, 1))
    bar.axvspan(0, HEAT_THRESHOLD, color="black", alpha=0.75)
    bar.set_yticks([])
    _style(bar, "")
    bar.set_xlabel(f"heatmap: inferno over 0..1, hidden below {HEAT_THRESHOLD}, opacity {HEAT_OPACITY}",
                   color="white", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(path))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pelabelup-slicer-figure-") as tmp:
        folder = write_analysis(Path(tmp))
        pictures, facts = render_scene(folder)
    compose(pictures, facts, OUTPUT)
    write_png(pictures["3d"], OUTPUT_3D)
    for path in (OUTPUT, OUTPUT_3D):
        print(f"written {path.relative_to(HERE.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
