"""Embolus lodging sites derived from a real pulmonary-artery mask (for hybrid real-anatomy cases).

Works on any grid, oblique and anisotropic included: distances are computed in mm with the voxel spacing,
and positions and directions are mapped to LPS with the grid's direction cosines.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from ..geometry import Geometry
from .types import ArterySite, Level, Side

log = logging.getLogger(__name__)

#: Lower radius bounds (mm) of the branch levels: >= 8 central, 4-8 lobar, 2-4 segmental, < 2 subsegmental.
LEVEL_MIN_RADIUS_MM: tuple[tuple[Level, float], ...] = (("central", 8.0), ("lobar", 4.0), ("segmental", 2.0))


def level_from_radius(radius_mm: float) -> Level:
    """Branch level of a lumen radius (mm), by :data:`LEVEL_MIN_RADIUS_MM`."""
    for level, lower in LEVEL_MIN_RADIUS_MM:
        if radius_mm >= lower:
            return level
    return "subsegmental"


def _ridge_candidates(edt_mm: np.ndarray, mask: np.ndarray, spacing_zyx: np.ndarray,
                      min_radius_mm: float) -> np.ndarray:
    """Indices (N, 3) (Z, Y, X) of centreline-ish voxels.

    A voxel qualifies when its EDT is within a third of the smallest spacing of its 3x3x3 maximum (a ridge
    of the distance map; the tolerance admits ridges of tapering vessels) and at least half the largest
    EDT within ``r + 2`` voxels of it (which drops bumps of the mask surface next to a wider lumen).
    """
    tolerance_mm = float(spacing_zyx.min()) / 3.0
    local_max = ndimage.maximum_filter(edt_mm, size=3, mode="constant", cval=0.0)
    ridge = mask & (edt_mm >= local_max - tolerance_mm) & (edt_mm >= min_radius_mm)
    points = np.argwhere(ridge)
    keep = np.ones(len(points), dtype=bool)
    for n, p in enumerate(points):
        r = edt_mm[tuple(p)]
        half = np.ceil(r / spacing_zyx).astype(int) + 2
        lo, hi = np.maximum(p - half, 0), np.minimum(p + half + 1, edt_mm.shape)
        keep[n] = r >= 0.5 * edt_mm[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].max()
    return points[keep]


def _suppress(points_mm: np.ndarray, radii_mm: np.ndarray, min_separation_mm: float) -> np.ndarray:
    """Greedy non-maximum suppression: largest radius first, keep a point farther than max(r, min) from kept ones."""
    order = np.argsort(-radii_mm, kind="stable")
    kept: list[int] = []
    for idx in order:
        if kept:
            d = np.linalg.norm(points_mm[kept] - points_mm[idx], axis=1)
            if np.any(d <= max(float(radii_mm[idx]), min_separation_mm)):
                continue
        kept.append(int(idx))
    return np.asarray(kept, dtype=int)


def _pca_direction(mask: np.ndarray, centre_zyx: np.ndarray, radius_mm: float, spacing_zyx: np.ndarray,
                   direction_matrix: np.ndarray) -> np.ndarray:
    """LPS unit vector of the main axis of the mask voxels within ``2 * radius_mm`` (at least 4 mm) of a centre."""
    reach_mm = max(2.0 * radius_mm, 4.0)
    half = np.ceil(reach_mm / spacing_zyx).astype(int)
    lo = np.maximum(centre_zyx - half, 0)
    hi = np.minimum(centre_zyx + half + 1, mask.shape)
    local = np.argwhere(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]) + lo
    offsets_mm = (local - centre_zyx) * spacing_zyx
    near = offsets_mm[np.linalg.norm(offsets_mm, axis=1) <= reach_mm]
    if len(near) < 3:
        return direction_matrix[:, 2].copy()
    # (Z, Y, X) mm offsets -> (i, j, k) mm offsets -> LPS
    lps = near[:, ::-1] @ direction_matrix.T
    _, vectors = np.linalg.eigh(np.cov(lps, rowvar=False))
    return vectors[:, -1]


def _segment_inside(mask: np.ndarray, a_zyx: np.ndarray, b_zyx: np.ndarray) -> bool:
    n = int(np.ceil(np.abs(b_zyx - a_zyx).max())) + 1
    samples = np.rint(a_zyx + np.linspace(0.0, 1.0, n + 1)[:, None] * (b_zyx - a_zyx)).astype(int)
    return bool(mask[samples[:, 0], samples[:, 1], samples[:, 2]].all())


def _site_tree(points_mm: np.ndarray, points_zyx: np.ndarray, radii_mm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Symmetric bool adjacency (N, N) of the minimum spanning tree of the sites.

    Candidate edges join sites closer than ``2 (r_a + r_b) + 10 mm`` whose straight segment stays inside the
    mask (so the tree follows the lumen and the cost stays low for large masks).
    """
    n = len(points_mm)
    dist = np.linalg.norm(points_mm[:, None] - points_mm[None], axis=-1)
    reach = 2.0 * (radii_mm[:, None] + radii_mm[None]) + 10.0
    weights = np.zeros_like(dist)
    for a in range(n):
        for b in np.flatnonzero(dist[a, a + 1:] <= reach[a, a + 1:]) + a + 1:
            if _segment_inside(mask, points_zyx[a].astype(float), points_zyx[b].astype(float)):
                weights[a, b] = weights[b, a] = max(dist[a, b], 1e-6)
    tree = minimum_spanning_tree(csr_matrix(weights)).toarray() > 0
    return tree | tree.T


def _classify_sides(points_lps: np.ndarray, radii_mm: np.ndarray,
                    adjacency: np.ndarray) -> tuple[list[Side], int | None, set[int]]:
    """Sides of the sites, the bifurcation site (or None) and the trunk sites.

    The bifurcation is the widest branching site (tree degree >= 3) whose removal leaves at least three
    arms, two of them with two or more sites. Of its arms, the trunk is the most anterior one (smallest
    mean LPS y relative to the bifurcation: the pulmonary trunk leaves the right ventricle anteriorly and
    its branches run posteriorly); its sites are ``central``. Every other arm is ``left`` or ``right`` by
    its mean LPS x against the bifurcation's x (LPS +x is the patient's left). Without a bifurcation the
    widest site's x is the midline and sites within its radius of it are ``central``.
    """
    n = len(points_lps)
    degree = adjacency.sum(axis=1)
    for bif in sorted((i for i in range(n) if degree[i] >= 3), key=lambda i: (-radii_mm[i], i)):
        cut = adjacency.copy()
        cut[bif, :] = cut[:, bif] = False
        _, arm = connected_components(csr_matrix(cut), directed=False)
        arms = [np.flatnonzero(arm == label) for label in sorted(set(arm.tolist()) - {arm[bif]})]
        if len(arms) < 3 or sum(len(a) >= 2 for a in arms) < 2:
            continue  # spurs of single sites, not a split of the trunk
        origin = points_lps[bif]
        trunk_arm = min(range(len(arms)), key=lambda a: float((points_lps[arms[a], 1] - origin[1]).mean()))
        sides: list[Side] = ["central"] * n
        for index, members in enumerate(arms):
            if index == trunk_arm:
                continue
            side: Side = "left" if points_lps[members, 0].mean() > origin[0] else "right"
            for i in members:
                sides[i] = side
        return sides, bif, {bif, *(int(i) for i in arms[trunk_arm])}
    widest = int(np.argmax(radii_mm))
    mid_x, tol = points_lps[widest, 0], radii_mm[widest]
    sides = ["central" if abs(x - mid_x) <= tol else ("left" if x > mid_x else "right") for x in points_lps[:, 0]]
    return sides, None, {i for i, s in enumerate(sides) if s == "central"}


def _tree_hops(adjacency: np.ndarray, start: int) -> np.ndarray:
    """Breadth-first hop counts from ``start`` along the tree; -1 where unreachable."""
    hops = np.full(len(adjacency), -1)
    hops[start] = 0
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for other in np.flatnonzero(adjacency[node]):
                if hops[other] < 0:
                    hops[other] = hops[node] + 1
                    nxt.append(int(other))
        frontier = nxt
    return hops


def _downstream(direction: np.ndarray, i: int, points_lps: np.ndarray, adjacency: np.ndarray, hops: np.ndarray,
                trunk: set[int], bif: int | None) -> np.ndarray:
    """Flip ``direction`` to point downstream: along the trunk toward the bifurcation, elsewhere away from it."""
    neighbours = np.flatnonzero(adjacency[i])
    if i == bif:
        upstream = [j for j in neighbours if j in trunk]
        toward = points_lps[i] - points_lps[upstream[0]] if upstream else None
    else:
        parents = [j for j in neighbours if 0 <= hops[j] < hops[i]]
        if not parents:
            return direction
        step = points_lps[i] - points_lps[parents[0]]  # away from the bifurcation
        toward = -step if (bif is not None and i in trunk) else step
    if toward is not None and float(np.dot(direction, toward)) < 0:
        return -direction
    return direction


def sites_from_mask(artery_mask: np.ndarray, geometry: Geometry, *, min_radius_mm: float = 1.0,
                    min_separation_mm: float = 3.0) -> list[ArterySite]:
    """Candidate embolus lodging points along the centreline of a pulmonary-artery mask.

    Method: Euclidean distance transform (EDT) of the mask in mm (with the voxel spacing, so anisotropic
    and oblique grids are handled); ridge voxels (local maxima of the EDT up to a third of a voxel, see
    :func:`_ridge_candidates`) are thinned greedily, widest first, so that kept sites are farther apart
    than their own radius (and ``min_separation_mm``). For each site:

    - ``radius_mm``: the EDT value (distance from the voxel centre to the nearest background voxel centre);
    - ``direction``: main axis (PCA) of the mask voxels within ``max(2 r, 4 mm)``, LPS unit vector, oriented
      downstream along the site tree (trunk: toward the bifurcation; branches: away from it; the
      bifurcation site: away from the trunk, as a saddle embolus expects);
    - ``side`` and ``bifurcation``: from the minimum spanning tree of the sites (edges inside the mask):
      the widest site where the tree splits into three substantial arms is the bifurcation, its most
      anterior arm is the trunk (``central``), the other arms are ``left``/``right`` by LPS x against the
      bifurcation (LPS +x is the patient's left); see :func:`_classify_sides`;
    - ``level``: ``central`` for trunk sites, else by radius (:data:`LEVEL_MIN_RADIUS_MM`: >= 8 mm central,
      4-8 lobar, 2-4 segmental, < 2 subsegmental). A mediastinal crop reaches trunk, main and lobar
      arteries, so its sites are mostly central and lobar; sites where the mask is cut by the crop have
      small radii and read as lower levels.

    Args:
        artery_mask: ``(Z, Y, X)`` mask (non-zero = lumen) on ``geometry``.
        geometry: the grid (any direction, any spacing).
        min_radius_mm: sites thinner than this are dropped.
        min_separation_mm: least distance between two sites, mm.

    Returns:
        sites ordered widest first; ``branch_id`` is -1 (unknown). Empty when the mask is empty.
    """
    mask = np.asarray(artery_mask) != 0
    if mask.shape != geometry.shape_zyx:
        raise ValueError(f"artery_mask shape {mask.shape} does not match grid (Z, Y, X) {geometry.shape_zyx}")
    if not mask.any():
        return []
    spacing_zyx = np.asarray(geometry.spacing_mm[::-1], dtype=float)
    edt_mm = ndimage.distance_transform_edt(mask, sampling=spacing_zyx)
    candidates = _ridge_candidates(edt_mm, mask, spacing_zyx, min_radius_mm)
    if len(candidates) == 0:
        return []
    radii = edt_mm[tuple(candidates.T)]
    kept = _suppress(candidates * spacing_zyx, radii, min_separation_mm)
    points_zyx, radii = candidates[kept], radii[kept]
    points_lps = geometry.index_to_world(points_zyx[:, ::-1].astype(float))
    adjacency = _site_tree(points_zyx * spacing_zyx, points_zyx, radii, mask)
    sides, bif, trunk = _classify_sides(points_lps, radii, adjacency)
    hops = _tree_hops(adjacency, bif if bif is not None else int(np.argmax(radii)))
    dm = geometry.direction_matrix
    sites = []
    for i in range(len(points_zyx)):
        direction = _pca_direction(mask, points_zyx[i], float(radii[i]), spacing_zyx, dm)
        direction = _downstream(direction, i, points_lps, adjacency, hops, trunk, bif)
        level: Level = "central" if i in trunk else level_from_radius(float(radii[i]))
        sites.append(ArterySite(
            center_mm=tuple(float(v) for v in points_lps[i]),
            direction=tuple(float(v) for v in direction / np.linalg.norm(direction)),
            radius_mm=float(radii[i]), level=level, side=sides[i], branch_id=-1, bifurcation=(i == bif),
        ))
    log.debug("%d sites from a mask of %d voxels (bifurcation: %s)", len(sites), int(mask.sum()), bif)
    return sites
