"""PNG overviews of a CT volume: axial, coronal and sagittal slices with coloured overlays.

Used by the demo and the README pictures. Matplotlib runs headless (Agg canvas, no pyplot, no display).
Slices are index-space planes through one voxel, shown with the physical aspect ratio (spacing) in the
radiological convention for identity-direction grids: axial seen from the feet (patient's right on the
left, anterior up), coronal seen from the front (head up), sagittal with anterior on the left. On oblique
or flipped grids the planes are index-space reformats, and the title says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .volume import CTVolume

OVERLAY_COLOURS = ("#20d0ff", "#ffd000", "#40ff40", "#ff60ff", "#ff9020")
EMBOLI_COLOUR = "#ff2020"


def _colours(names: list[str]) -> dict[str, str]:
    """Red for ``emboli`` whatever its place, the palette in order for the others."""
    others = iter(OVERLAY_COLOURS * (1 + len(names) // len(OVERLAY_COLOURS)))
    return {name: EMBOLI_COLOUR if name == "emboli" else next(others) for name in names}


def overview_point(shape_zyx: tuple[int, int, int], overlays: Mapping[str, np.ndarray] | None) -> tuple[int, int, int]:
    """``(z, y, x)`` index: the centroid of the largest label of an ``emboli`` overlay, else the centre."""
    emboli = (overlays or {}).get("emboli")
    if emboli is not None and np.any(emboli):
        counts = np.bincount(np.asarray(emboli, dtype=np.int64).ravel())
        counts[0] = 0
        zyx = np.argwhere(emboli == int(np.argmax(counts)))
        centre = zyx.mean(axis=0)
        # the clot voxel nearest its centroid, so the three planes cut the clot itself
        best = zyx[int(np.argmin(((zyx - centre) ** 2).sum(axis=1)))]
        return int(best[0]), int(best[1]), int(best[2])
    return tuple(int(n // 2) for n in shape_zyx)  # type: ignore[return-value]


def render_overview(ct: CTVolume, overlays: Mapping[str, np.ndarray] | None, path: str | Path,
                    title: str | None = None, window: tuple[float, float] = (100.0, 700.0),
                    point_zyx: Sequence[int] | None = None, size_px: tuple[int, int] = (1500, 560),
                    heatmap: np.ndarray | None = None, heat_floor: float = 0.1) -> Path:
    """Write a PNG with axial, coronal and sagittal slices of ``ct`` through one point.

    Args:
        ct: the volume (``hu`` ``(Z, Y, X)``, HU).
        overlays: name -> ``(Z, Y, X)`` mask or label map on the same grid (nonzero = drawn); ``"emboli"``
            is filled and outlined in red, the others are outlined in other colours; a legend names them.
        path: output PNG file (parent folders created).
        title: text above the panels (the grid's shape and spacing are added).
        window: display window ``(level, width)`` in HU; the default is the PE window L100/W700.
        point_zyx: voxel the planes pass through; default: the largest embolus's centre, else the centre.
        size_px: image ``(width, height)`` in pixels.
        heatmap: optional ``(Z, Y, X)`` map in [0, 1] (an explanation) drawn under the outlines with the
            perceptual ``inferno`` colour map; values below ``heat_floor`` are not drawn.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    level, width = float(window[0]), float(window[1])
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    hu = ct.hu
    overlays = dict(overlays or {})
    for name, arr in overlays.items():
        if arr.shape != hu.shape:
            raise ValueError(f"overlay {name!r} has shape {arr.shape}, expected {hu.shape}")
    if heatmap is not None and heatmap.shape != hu.shape:
        raise ValueError(f"heatmap has shape {heatmap.shape}, expected {hu.shape}")
    z, y, x = (int(v) for v in (point_zyx if point_zyx is not None else overview_point(hu.shape, overlays)))
    if not all(0 <= v < n for v, n in zip((z, y, x), hu.shape, strict=True)):
        raise ValueError(f"point_zyx {(z, y, x)} lies outside the volume {hu.shape}")
    sx, sy, sz = ct.geometry.spacing_mm
    nz, ny, nx = hu.shape
    # (name, 2-D selector, extent (left, right, bottom, top) in mm, origin of the rows)
    planes = [
        ("axial", lambda a: a[z], (0, nx * sx, ny * sy, 0), f"slice k={z}"),
        ("coronal", lambda a: a[:, y, :], (0, nx * sx, 0, nz * sz), f"row j={y}"),
        ("sagittal", lambda a: a[:, :, x], (0, ny * sy, 0, nz * sz), f"column i={x}"),
    ]
    fig = Figure(figsize=(size_px[0] / 100.0, size_px[1] / 100.0), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.04, "left": 0.01, "right": 0.99, "bottom": 0.09,
                                           "top": 0.88})
    lo, hi = level - width / 2, level + width / 2
    colours = _colours(list(overlays))
    handles = []
    for ax, (name, cut, extent, where) in zip(axes, planes, strict=True):
        origin = "upper" if name == "axial" else "lower"
        ax.imshow(cut(hu), cmap="gray", vmin=lo, vmax=hi, extent=extent, origin=origin, interpolation="nearest")
        if heatmap is not None:
            heat = cut(heatmap)
            ax.imshow(np.ma.masked_where(heat < heat_floor, heat), cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.6,
                      extent=extent, origin=origin, interpolation="nearest")
        for label, arr in overlays.items():
            colour = colours[label]
            mask = cut(arr) > 0
            if not mask.any():
                continue
            if label == "emboli":
                ax.imshow(np.ma.masked_where(~mask, mask), cmap=ListedColormap([colour]), alpha=0.45,
                          extent=extent, origin=origin, interpolation="nearest")
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=0.8, extent=extent,
                       origin=origin)
        ax.set_title(f"{name} ({where})", color="white", fontsize=9)
        ax.set_axis_off()
    if heatmap is not None:
        handles.append(Patch(facecolor="#f98e09", alpha=0.8, label=f"heatmap (>= {heat_floor:g})"))
    for label in overlays:
        colour = colours[label]
        handles.append(Patch(facecolor=colour, alpha=0.6, label=label) if label == "emboli"
                       else Line2D([0], [0], color=colour, label=label))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, labelcolor="white",
                   fontsize=9)
    geo = ct.geometry
    grid = f"{nx}x{ny}x{nz} voxels, {sx:.2f}x{sy:.2f}x{sz:.2f} mm, window L{level:g}/W{width:g}"
    if geo.is_oblique or not np.allclose(geo.direction_matrix, np.eye(3)):
        grid += " - index-space planes (oblique grid)"
    fig.suptitle(f"{title}\n{grid}" if title else grid, color="white", fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, facecolor="black")
    return out
