"""Pulmonary arterial and venous trees: centreline polylines with radii (LPS mm), grown into the lungs.

The arterial tree starts at the pulmonary valve: the trunk runs up and back to its bifurcation, the right and
left pulmonary arteries run out to the hila, then lobar (3 right, 2 left), segmental (2-4 per lobar),
subsegmental (2 per segmental) and two generations of small distal branches follow. Growth is space-filling:
points are sampled inside each lobe, and each branch heads for the centroid of its share of its parent's
points (a few k-means steps split the share among siblings), so the tree fills the lungs without leaving
them. Curves are cubic Bezier paths with a random arrival direction. Veins grow the same way from four ostia
on the left atrium. Every branch's lumen overlaps its parent's, so the tree is one connected lumen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .anatomy import LOBES, Anatomy, lobe_of, lung_points
from .mediastinum import Mediastinum, Vessel
from .tubes import Tube, curved_path, unit
from .types import LEVELS, ArterySite, Side

BranchLevel = Literal["central", "lobar", "segmental", "subsegmental", "distal"]

# (level, children per parent, radius at the start (mm, or a fraction of the parent's end radius when
# the range is below 1 and relative), how far towards its territory's centroid it goes; -1: to its far side)
_Generation = tuple[str, tuple[int, int], tuple[float, float], bool, float]
_DISTAL: tuple[_Generation, ...] = (
    ("distal", (2, 2), (0.94, 1.0), True, 0.65),
    ("distal", (2, 2), (0.94, 1.0), True, 0.7),
    ("distal", (2, 2), (0.94, 1.0), True, 0.8),
    ("distal", (2, 2), (0.94, 1.0), True, -1.0),
)
TWIG_GENERATIONS = 2  # procedural bifurcations beyond the territory tree, clipped to the lungs when painted
THIN_RADIUS_MM = 1.8  # branches thinner than this are rasterised in bulk (:mod:`.splat`)
_ARTERY_GENERATIONS: tuple[_Generation, ...] = (
    ("segmental", (2, 4), (2.4, 3.4), False, 0.5),
    ("subsegmental", (2, 3), (1.3, 1.6), False, 0.55),
    *_DISTAL,
)
_VEIN_GENERATIONS: tuple[_Generation, ...] = (
    ("segmental", (3, 3), (3.0, 4.0), False, 0.45),
    ("subsegmental", (2, 2), (1.7, 2.2), False, 0.55),
    *_DISTAL,
)
_LOBAR_RADIUS = {"RUL": (4.5, 5.5), "RML": (3.8, 4.6), "RLL": (5.5, 6.5), "LUL": (4.6, 5.6), "LLL": (5.3, 6.3)}


@dataclass(frozen=True)
class Branch:
    """One vessel segment between branchings.

    Attributes:
        branch_id: index in its tree; ``parent_id`` is -1 for the root.
        level: ``central`` (trunk, main pulmonary arteries), ``lobar``, ``segmental``, ``subsegmental`` or
            ``distal`` (small vessels below subsegmental, painted but never an embolus site).
        side: ``central`` for the trunk, else the lung it serves.
        tube: centreline and radii, LPS mm.
    """

    branch_id: int
    parent_id: int
    level: BranchLevel
    side: Side
    tube: Tube


@dataclass(frozen=True)
class VascularTree:
    """A tree of branches (LPS mm).

    Attributes:
        kind: ``artery`` or ``vein``.
        branches: the branches, parents before children.
        twigs: ``(K, 8)`` small straight vessel segments beyond the branches, rows
            ``[a_x, a_y, a_z, b_x, b_y, b_z, r_a, r_b]`` (LPS mm); they may poke out of the lungs and are
            clipped to them when painted.
        bifurcation_mm: the pulmonary-trunk bifurcation (arteries only).
    """

    kind: Literal["artery", "vein"]
    branches: tuple[Branch, ...]
    twigs: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))
    bifurcation_mm: tuple[float, float, float] | None = None

    def thick(self) -> list[Branch]:
        """Branches at least :data:`THIN_RADIUS_MM` thick somewhere (rasterised piece by piece)."""
        return [b for b in self.branches if float(b.tube.radii_mm.max()) >= THIN_RADIUS_MM]

    def thin_segments(self) -> np.ndarray:
        """``(K, 8)`` segments of the thin branches and the twigs (rasterised in bulk)."""
        rows = [self.twigs]
        for b in self.branches:
            if float(b.tube.radii_mm.max()) < THIN_RADIUS_MM:
                p, r = b.tube.points_mm, b.tube.radii_mm
                rows.append(np.concatenate([p[:-1], p[1:], r[:-1, None], r[1:, None]], axis=1))
        return np.concatenate(rows)


def grow_twigs(tree_branches: list[Branch], rng: np.random.Generator, generations: int = TWIG_GENERATIONS) -> np.ndarray:
    """Bifurcate every terminal branch ``generations`` more times (straight segments, Murray-like radii)."""
    parents = {b.parent_id for b in tree_branches}
    tips = [b for b in tree_branches if b.branch_id not in parents and b.level == "distal"]
    if not tips:
        return np.zeros((0, 8))
    pos = np.array([b.tube.points_mm[-1] for b in tips])
    tangent = np.array([b.tube.point_at(1.0)[1] for b in tips])
    radius = np.array([b.tube.radii_mm[-1] for b in tips])
    rows = []
    for _ in range(generations):
        pos, tangent, radius = (np.repeat(a, 2, axis=0) for a in (pos, tangent, radius))
        side = rng.normal(size=pos.shape)
        side -= tangent * (side * tangent).sum(axis=1, keepdims=True)
        side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-9)
        angle = np.deg2rad(rng.uniform(20, 40, size=(len(pos), 1)))
        new_dir = np.cos(angle) * tangent + np.sin(angle) * side
        r0 = np.maximum(radius * rng.uniform(0.9, 0.97, size=len(pos)), 0.55)
        end = pos + new_dir * (r0 * rng.uniform(7, 12, size=len(pos)))[:, None]
        rows.append(np.concatenate([pos, end, r0[:, None], 0.93 * r0[:, None]], axis=1))
        pos, tangent, radius = end, new_dir, 0.93 * r0
    return np.concatenate(rows)




def sample_lung_points(anat: Anatomy, med: Mediastinum, rng: np.random.Generator, n: int = 12000,
                       extra: tuple[Vessel, ...] = ()) -> np.ndarray:
    """About ``n`` LPS points ``(N, 3)`` uniformly inside the lungs (outside mediastinal structures)."""
    lo = np.array([-anat.cav_a, anat.cav_v - anat.cav_b, min(anat.dome_right_w, anat.dome_left_w) - 2.5
                   * anat.dome_depth_mm])
    hi = np.array([anat.cav_a, anat.cav_v + anat.cav_b, anat.apex_w])
    found: list[np.ndarray] = []
    total = 0
    for _ in range(20):
        cand = np.asarray(anat.anchor_mm) + rng.uniform(lo, hi, size=(3 * n, 3))
        keep = lung_points(anat, cand, med.contains_points(cand, extra)) > 0
        found.append(cand[keep])
        total += int(keep.sum())
        if total >= n:
            break
    return np.concatenate(found)[:n]


def _split(points: np.ndarray, k: int, rng: np.random.Generator, iters: int = 5) -> list[np.ndarray]:
    """Split ``points`` into ``k`` compact groups; empty groups dropped.

    Two groups: halves across the median of the principal axis (cheap, used for most splits); more: a
    few k-means steps from random seeds.
    """
    if len(points) <= k:
        return [points[i:i + 1] for i in range(len(points))]
    if k == 2:
        centred = points - points.mean(axis=0)
        axis = np.linalg.eigh(np.einsum("ni,nj->ij", centred, centred))[1][:, -1]  # no BLAS: thread-independent
        proj = centred @ axis
        cut = np.partition(proj, len(proj) // 2)[len(proj) // 2] + rng.normal(0.0, 0.1) * proj.std()
        groups = [points[proj <= cut], points[proj > cut]]
        return [g for g in groups if len(g)]
    centres = points[rng.choice(len(points), size=k, replace=False)]
    labels = np.zeros(len(points), dtype=int)
    for _ in range(iters):
        labels = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        counts = np.bincount(labels, minlength=k)[:, None]
        sums = np.zeros((k, 3))
        np.add.at(sums, labels, points)
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
    return [points[labels == j] for j in range(k) if np.any(labels == j)]


class _Grower:
    """Accumulates branches; each new branch gets the next id."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.branches: list[Branch] = []

    def add(self, parent: int, level: BranchLevel, side: Side, path: np.ndarray, r0: float, r1: float) -> Branch:
        radii = np.linspace(r0, r1, len(path))
        b = Branch(len(self.branches), parent, level, side, Tube(path, radii))
        self.branches.append(b)
        return b

    def child(self, parent: Branch, territory: np.ndarray, level: BranchLevel, radius: float, reach: float,
              at_end: bool) -> Branch | None:
        frac = 1.0 if at_end else float(self.rng.uniform(0.55, 0.95))
        start, tangent, r_parent = parent.tube.point_at(frac)
        radius = min(radius, 0.9 * r_parent)
        if reach < 0:  # run to a far point of the territory
            dist2 = ((territory - start) ** 2).sum(axis=1)
            end = territory[int(np.argpartition(dist2, int(0.85 * (len(dist2) - 1)))[int(0.85 * (len(dist2) - 1))])]
        else:
            end = start + reach * (territory.mean(axis=0) - start)
        chord = end - start
        if float(chord @ chord) < (2.0 * radius + 2.0) ** 2:
            return None
        heading = unit(0.6 * tangent + unit(chord))
        path = curved_path(start, heading, end, self.rng, bend=0.35, step_mm=min(max(2.5 * radius, 1.5), 4.0))
        return self.add(parent.branch_id, level, parent.side, path, radius, (0.95 if level == "distal" else 0.85) * radius)

    def grow(self, parent: Branch, territory: np.ndarray, generations: tuple[_Generation, ...]) -> None:
        if not generations or len(territory) < 2:
            return
        level, (k_lo, k_hi), (r_lo, r_hi), relative, reach = generations[0]
        k = int(self.rng.integers(k_lo, k_hi + 1))
        groups = sorted(_split(territory, k, self.rng), key=len, reverse=True)
        r_end = float(parent.tube.radii_mm[-1])
        for i, group in enumerate(groups):
            radius = float(self.rng.uniform(r_lo, r_hi)) * (r_end if relative else 1.0)
            b = self.child(parent, group, level, radius, reach, at_end=(i == 0))  # type: ignore[arg-type]
            if b is not None:
                self.grow(b, group, generations[1:])


def _by_lobe(anat: Anatomy, points: np.ndarray) -> dict[str, np.ndarray]:
    lobes = lobe_of(anat, points)
    return {name: points[lobes == i] for i, name in enumerate(LOBES)}


def central_arteries(anat: Anatomy, rng: np.random.Generator) -> list[tuple[str, np.ndarray, float, float]]:
    """Trunk, right and left pulmonary arteries: ``(name, path (N, 3) LPS mm, r_start, r_end)``."""
    s = anat.scale
    valve = anat.template([16, -42, -44])
    bif = anat.template([8, 0, 0])
    r_trunk = float(rng.uniform(13, 15)) * anat.size_scale
    r_rpa = float(rng.uniform(10, 11.5)) * anat.size_scale
    r_lpa = float(rng.uniform(9.5, 11)) * anat.size_scale
    trunk = curved_path(valve, unit(np.array([-0.1, 0.5, 0.85]) * s), bif, rng, bend=0.1, step_mm=3.0)
    rpa = curved_path(bif, unit(np.array([-0.8, 0.45, -0.1]) * s), anat.template([-56, 16, -14]), rng, bend=0.15,
                      step_mm=3.0)
    lpa = curved_path(bif, unit(np.array([0.5, 0.45, 0.75]) * s), anat.template([58, 26, -2]), rng, bend=0.15,
                      step_mm=3.0)
    return [("trunk", trunk, r_trunk, 0.95 * r_trunk), ("right", rpa, r_rpa, 0.85 * r_rpa),
            ("left", lpa, r_lpa, 0.85 * r_lpa)]


def central_vessels(central: list[tuple[str, np.ndarray, float, float]]) -> tuple[Vessel, ...]:
    """The central arteries as mediastinal structures (fat margin around the trunk, thin around the mains)."""
    return tuple(Vessel(f"pa_{name}", Tube(path, np.linspace(r0, r1, len(path))), 0.0, 5.0 if name == "trunk" else 2.0)
                 for name, path, r0, r1 in central)


def grow_arterial_tree(anat: Anatomy, central: list[tuple[str, np.ndarray, float, float]], lung_pts: np.ndarray,
                       rng: np.random.Generator, twig_generations: int = TWIG_GENERATIONS) -> VascularTree:
    """The pulmonary arterial tree of ``anat``; ``lung_pts`` from :func:`sample_lung_points`."""
    g = _Grower(rng)
    (_, trunk_p, t0, t1), (_, rpa_p, r0, r1), (_, lpa_p, l0, l1) = central
    trunk = g.add(-1, "central", "central", trunk_p, t0, t1)
    rpa = g.add(trunk.branch_id, "central", "right", rpa_p, r0, r1)
    lpa = g.add(trunk.branch_id, "central", "left", lpa_p, l0, l1)
    lobes = _by_lobe(anat, lung_pts)
    # (lobe, parent, start fraction on the parent, reach towards the lobe centroid)
    plan = [("RUL", rpa, float(rng.uniform(0.4, 0.6)), 0.4), ("RML", rpa, 1.0, 0.4), ("RLL", rpa, 1.0, 0.35),
            ("LUL", lpa, float(rng.uniform(0.6, 0.8)), 0.4), ("LLL", lpa, 1.0, 0.35)]
    for lobe, parent, frac, reach in plan:
        pts = lobes[lobe]
        if len(pts) < 8:
            continue
        start, tangent, r_parent = parent.tube.point_at(frac)
        radius = min(float(rng.uniform(*_LOBAR_RADIUS[lobe])) * anat.size_scale, 0.8 * r_parent)
        end = start + reach * (pts.mean(axis=0) - start)
        path = curved_path(start, unit(0.5 * tangent + unit(end - start)), end, rng, bend=0.25)
        lobar = g.add(parent.branch_id, "lobar", parent.side, path, radius, 0.85 * radius)
        g.grow(lobar, pts, _ARTERY_GENERATIONS)
    return VascularTree("artery", tuple(g.branches), grow_twigs(g.branches, rng, twig_generations),
                        tuple(float(c) for c in trunk_p[-1]))


def grow_venous_tree(anat: Anatomy, lung_pts: np.ndarray, rng: np.random.Generator,
                     twig_generations: int = TWIG_GENERATIONS) -> VascularTree:
    """Pulmonary veins: four trunks from the left atrium (superior and inferior, each side) into the lobes."""
    g = _Grower(rng)
    lobes = _by_lobe(anat, lung_pts)
    ostia = [("right", (-26, 16, -58), ("RUL", "RML")), ("right", (-26, 20, -78), ("RLL",)),
             ("left", (30, 14, -58), ("LUL",)), ("left", (30, 20, -78), ("LLL",))]
    for side, ostium, names in ostia:
        pts = np.concatenate([lobes[n] for n in names])
        if len(pts) < 8:
            continue
        start = anat.template(ostium)
        radius = float(rng.uniform(5.5, 7.0)) * anat.size_scale
        end = start + 0.3 * (pts.mean(axis=0) - start)
        path = curved_path(start, unit(end - start), end, rng, bend=0.2)
        root = g.add(-1, "lobar", side, path, radius, 0.9 * radius)  # type: ignore[arg-type]
        g.grow(root, pts, _VEIN_GENERATIONS)
    return VascularTree("vein", tuple(g.branches), grow_twigs(g.branches, rng, twig_generations))


def sites_from_tree(tree: VascularTree) -> list[ArterySite]:
    """Candidate embolus sites along every arterial branch down to subsegmental, plus the trunk bifurcation.

    Sites are spaced about ``max(2.5 radius, 6 mm)`` apart along each branch, away from its ends.
    """
    sites: list[ArterySite] = []
    for b in tree.branches:
        if b.level not in LEVELS:
            continue
        r_mean = float(b.tube.radii_mm.mean())
        length = b.tube.length_mm
        # stay out of the parent's lumen at the origin and off the very end
        start = float(tree.branches[b.parent_id].tube.radii_mm.mean()) + r_mean if b.parent_id >= 0 else r_mean
        lo, hi = max(0.15, start / length), 1.0 - min(0.15, r_mean / length)
        if lo >= hi:
            continue
        n = max(1, int(length * (hi - lo) // max(2.5 * r_mean, 6.0)))
        for frac in np.linspace(lo, hi, n) if n > 1 else [0.5 * (lo + hi)]:
            p, t, r = b.tube.point_at(float(frac))
            sites.append(ArterySite(tuple(float(c) for c in p), tuple(float(c) for c in t), r, b.level, b.side,
                                    b.branch_id))
    if tree.bifurcation_mm is not None:
        trunk = tree.branches[0]
        _, t, r = trunk.tube.point_at(1.0)
        sites.append(ArterySite(tree.bifurcation_mm, tuple(float(c) for c in t), r, "central", "central",
                                trunk.branch_id, bifurcation=True))
    return sites
