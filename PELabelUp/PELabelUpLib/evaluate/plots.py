"""PNG plots of an evaluation: ROC (study and slice), FROC, and per-case slice panels.

Matplotlib runs headless (Agg canvas, no pyplot, no display). Axial slices are shown as
:mod:`PELabelUpLib.render` shows them: index-space planes with the physical aspect ratio (extent in mm),
row j down, column i to the right (the radiological view for identity-direction grids).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._grid import label_components
from .froc import FrocCurve
from .roc import RocCurve

TRUTH_COLOUR = "#30ff30"
MASK_COLOUR = "#ff3030"
CROP_COLOUR = "#00c8ff"
HEAT_CMAP = "inferno"  # no green or cyan: the reference contour stays visible over the heat


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 scan"``, ``"2 scans"``; ``many`` for irregular plurals."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _figure(width_in: float, height_in: float, dark: bool = False):  # -> Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, facecolor="black" if dark else "white")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, facecolor=fig.get_facecolor())
    return out


def plot_roc(curves: Sequence[tuple[str, RocCurve | None, float | None, int, int]], path: str | Path) -> Path:
    """One panel per ``(title, curve, auc, n_positive, n_negative)``; an undefined curve says why."""
    fig = _figure(5.2 * len(curves), 5.0)
    axes = np.atleast_1d(fig.subplots(1, len(curves), gridspec_kw={"wspace": 0.28, "left": 0.08, "right": 0.97,
                                                                     "bottom": 0.11, "top": 0.9}))
    for ax, (title, curve, auc, n_pos, n_neg) in zip(axes, curves, strict=True):
        ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="chance")
        if curve is not None and auc is not None:
            ax.plot(curve.fpr, curve.tpr, color="#1f5fbf", linewidth=2, marker="o" if curve.fpr.size < 60 else None,
                    markersize=3, label=f"AUC {auc:.3f}")
            ax.legend(loc="lower right", fontsize=10)
        else:
            ax.text(0.5, 0.5, "undefined:\nneeds positives and negatives", ha="center", va="center", fontsize=11,
                    color="0.3", transform=ax.transAxes)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.grid(True, color="0.9")
        ax.set_xlabel("false-positive rate (1 - specificity)")
        ax.set_ylabel("true-positive rate (sensitivity)")
        ax.set_title(f"{title}\n{n_pos} positive, {n_neg} negative", fontsize=11)
    return _save(fig, path)


def plot_froc(curve: FrocCurve | None, sensitivity_at: Mapping[float, float], path: str | Path,
              n_scans: int, n_emboli: int) -> Path:
    """Embolus sensitivity against mean false-positive components per scan, with the chosen operating rates.

    The curve starts at ``(0, 0)`` (no component kept) and stays flat after its last point (every component
    kept): beyond it, more tolerated false positives change nothing.
    """
    fig = _figure(7.0, 5.0)
    ax = fig.subplots(1, 1, gridspec_kw={"left": 0.1, "right": 0.97, "bottom": 0.11, "top": 0.9})
    x_max = 4.5 if curve is None else max(4.5, 1.05 * float(curve.mean_fp_per_scan.max(initial=0.0)))
    if curve is None:
        ax.text(0.5, 0.5, "undefined: no embolus in the cohort", ha="center", va="center", color="0.3",
                transform=ax.transAxes)
    else:
        fp = np.r_[0.0, curve.mean_fp_per_scan]
        sens = np.r_[0.0, curve.sensitivity]
        # steps: between operating points the best reachable sensitivity is the previous point's
        ax.plot(fp, sens, color="#1f5fbf", linewidth=2, drawstyle="steps-post",
                label="operating points (threshold on peak heat)")
        if fp.size < 80:
            ax.plot(fp, sens, linestyle="none", marker="o", markersize=3, color="#1f5fbf")
        ax.plot([fp[-1], x_max], [sens[-1], sens[-1]], color="#1f5fbf", linewidth=1.2, linestyle=":",
                label="every component kept")
        for rate, value in sensitivity_at.items():
            ax.axvline(rate, color="0.75", linewidth=0.8, linestyle="--")
            ax.plot([rate], [value], marker="s", color="#d04010", markersize=6)
            ax.annotate(f"{value:.2f}", (rate, value), textcoords="offset points", xytext=(4, -13), fontsize=9,
                        color="#d04010")
        ax.plot([], [], marker="s", linestyle="none", color="#d04010", label="sensitivity at 0.5/1/2/4 FP/scan")
        ax.legend(loc="lower right", fontsize=9)
    ax.set_xlim(0, x_max)
    ax.set_ylim(-0.01, 1.03)
    ax.grid(True, color="0.9")
    ax.set_xlabel("mean false-positive components per scan")
    ax.set_ylabel("embolus sensitivity")
    ax.set_title(f"FROC: {plural(n_emboli, 'embolus', 'emboli')} in {plural(n_scans, 'scan')}", fontsize=11)
    return _save(fig, path)


def largest_component(truth: np.ndarray) -> np.ndarray:
    """``bool (Z, Y, X)``: the largest 26-connected component of ``truth != 0`` (empty if none)."""
    labels, n = label_components(truth)
    if n == 0:
        return np.zeros(labels.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def panel_layout(embolus: np.ndarray, spacing_mm: Sequence[float], n_slices: int,
                 margin_mm: float) -> tuple[list[int], int, tuple[int, int, int, int]]:
    """Slices and crop of a case panel around one embolus (``bool (Z, Y, X)``, not empty).

    Returns:
        ``(slices, centre_slice, (y0, y1, x0, x1))``: up to ``n_slices`` axial slice indices k spread over
        the embolus, the slice holding most of it, and the in-plane crop (half-open index bounds) around it
        with ``margin_mm`` on each side.
    """
    zyx = np.argwhere(embolus)
    z0, y0, x0 = zyx.min(axis=0)
    z1, y1, x1 = zyx.max(axis=0)
    slices = sorted({int(round(v)) for v in np.linspace(z0, z1, min(n_slices, int(z1 - z0) + 1))})
    per_slice = embolus.reshape(embolus.shape[0], -1).sum(axis=1)
    centre = int(np.argmax(per_slice))
    sx, sy = float(spacing_mm[0]), float(spacing_mm[1])
    my, mx = int(np.ceil(margin_mm / sy)), int(np.ceil(margin_mm / sx))
    ny, nx = embolus.shape[1:]
    crop = (max(0, int(y0) - my), min(ny, int(y1) + my + 1), max(0, int(x0) - mx), min(nx, int(x1) + mx + 1))
    return slices, centre, crop


def plot_case_panel(
    ct_hu: np.ndarray | None,
    truth: np.ndarray,
    heatmap: np.ndarray,
    mask: np.ndarray,
    spacing_mm: Sequence[float],
    path: str | Path,
    title: str,
    *,
    n_slices: int = 5,
    margin_mm: float = 20.0,
    window: tuple[float, float] = (100.0, 700.0),
) -> Path:
    """Axial slices through the largest reference embolus: CT, heatmap overlay, and mask contours.

    Columns: the whole slice through the embolus's bulk (the crop outlined), then crops of up to
    ``n_slices`` slices spread over the embolus. Rows: the CT in ``window`` (level, width in HU; default
    the PE window L100/W700); the heatmap over it; the reference (green) and predicted mask (red) contours.

    Args:
        ct_hu: ``(Z, Y, X)`` HU, or ``None`` (a black background).
        truth: ``(Z, Y, X)`` reference label map or mask (must hold an embolus).
        heatmap: ``(Z, Y, X)`` in [0, 1]; ``mask``: ``(Z, Y, X)`` predicted mask (nonzero inside).
        spacing_mm: voxel size in index order ``(x, y, z)``, mm.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    truth = np.asarray(truth) != 0
    if not truth.any():
        raise ValueError("a case panel needs a positive case (the reference mask is empty)")
    for name, arr in (("heatmap", heatmap), ("mask", mask), ("ct_hu", ct_hu)):
        if arr is not None and np.shape(arr) != truth.shape:
            raise ValueError(f"{name} shape {np.shape(arr)} differs from the reference shape {truth.shape}")
    embolus = largest_component(truth)
    slices, centre, (y0, y1, x0, x1) = panel_layout(embolus, spacing_mm, n_slices, margin_mm)
    sx, sy = float(spacing_mm[0]), float(spacing_mm[1])
    level, width = window
    background = ct_hu if ct_hu is not None else np.full(truth.shape, level - width, dtype=np.float32)
    pred = np.asarray(mask) != 0
    columns = [(centre, slice(None), slice(None), "whole slice")] + [
        (k, slice(y0, y1), slice(x0, x1), "") for k in slices]
    fig = _figure(2.2 * len(columns) + 0.9, 7.6, dark=True)
    axes = fig.subplots(3, len(columns), squeeze=False,
                        gridspec_kw={"wspace": 0.04, "hspace": 0.1, "left": 0.05, "right": 0.93, "bottom": 0.07,
                                     "top": 0.86})
    heat_image = None
    for col, (k, rows, cols, note) in enumerate(columns):
        r0 = rows.start or 0
        c0 = cols.start or 0
        r1 = rows.stop if rows.stop is not None else truth.shape[1]
        c1 = cols.stop if cols.stop is not None else truth.shape[2]
        extent = (c0 * sx, c1 * sx, r1 * sy, r0 * sy)
        ct2d, heat2d = background[k, rows, cols], np.asarray(heatmap[k, rows, cols], dtype=float)
        gt2d, pred2d = truth[k, rows, cols], pred[k, rows, cols]
        for row in range(3):
            ax = axes[row, col]
            ax.imshow(ct2d, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, extent=extent,
                      interpolation="nearest")
            if row == 1:
                heat_image = ax.imshow(heat2d, cmap=HEAT_CMAP, vmin=0, vmax=1, alpha=np.clip(heat2d, 0, 1) * 0.7,
                                       extent=extent, interpolation="nearest")
            if row == 2 and gt2d.any():
                ax.imshow(np.ma.masked_where(~gt2d, gt2d), cmap=ListedColormap([TRUTH_COLOUR]), alpha=0.25,
                          extent=extent, interpolation="nearest")
            if row >= 1 and gt2d.any():
                ax.contour(gt2d.astype(np.float32), levels=[0.5], colors=[TRUTH_COLOUR], linewidths=1.0,
                           extent=extent, origin="upper")
            if row == 2 and pred2d.any():
                ax.contour(pred2d.astype(np.float32), levels=[0.5], colors=[MASK_COLOUR], linewidths=1.0,
                           extent=extent, origin="upper")
            if col == 0:
                ax.add_patch(Rectangle((x0 * sx, y0 * sy), (x1 - x0) * sx, (y1 - y0) * sy, fill=False,
                                       edgecolor=CROP_COLOUR, linewidth=1.0))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(CROP_COLOUR if col == 0 else "0.3")
        axes[0, col].set_title(f"k={k}" + (f" ({note})" if note else ""), color="white", fontsize=9)
    for row, name in enumerate((f"CT L{level:g}/W{width:g}", "heatmap", "masks")):
        axes[row, 0].set_ylabel(name, color="white", fontsize=9)
    if heat_image is not None:
        bar_ax = fig.add_axes((0.945, 0.36, 0.012, 0.22))
        bar = fig.colorbar(heat_image, cax=bar_ax)
        bar.solids.set_alpha(1.0)
        bar.ax.tick_params(colors="white", labelsize=8)
        bar.set_label("heat", color="white", fontsize=8)
    handles = [Line2D([0], [0], color=TRUTH_COLOUR, label="reference embolus"),
               Line2D([0], [0], color=MASK_COLOUR, label="predicted mask"),
               Line2D([0], [0], color=CROP_COLOUR, label="crop of the other columns")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, labelcolor="white", fontsize=9)
    fig.suptitle(title, color="white", fontsize=10)
    return _save(fig, path)
