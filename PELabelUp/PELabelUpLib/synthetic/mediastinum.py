"""Heart, great vessels and central airways of the phantom, in patient space (LPS mm).

Template coordinates below are body-frame mm for an average adult (origin at the pulmonary-trunk
bifurcation, ``u`` left, ``v`` back, ``w`` up; see :mod:`.anatomy`), stretched per patient by
``Anatomy.template``. In the pulmonary-arterial phase the right atrium and ventricle are as bright as the
pulmonary arteries, the superior vena cava is the densest vessel (undiluted contrast from the arm), the
aorta and left heart are dimmer and the inferior vena cava is barely enhanced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import Geometry
from .anatomy import AIR_HU, Anatomy
from .shapes import Ellipsoid, ellipsoid_box, frame_from, paint_ellipsoid
from .tubes import Tube, mark_tube, paint_tube, polyline_distance, spline_tube

HEART_AXIS = np.array([0.55, -0.45, -0.7])  # base -> apex: left, anterior, down

# name: (control points, radii, margin of mediastinal fat, which contrast level)
_VESSELS: dict[str, tuple[list[tuple[float, float, float]], list[float], float, str]] = {
    "aorta": ([(20, -8, -82), (-4, -16, -60), (-20, -22, -30), (-22, -22, 10), (-16, -14, 42), (-4, -10, 58),
               (16, -2, 62), (28, 16, 56), (33, 38, 40), (34, 50, 12), (32, 50, -40), (28, 48, -120),
               (22, 46, -240)],
              [10, 13, 15, 15, 14, 13, 13, 13, 12.5, 12, 11.5, 11, 10.5], 6.0, "aorta_hu"),
    "brachiocephalic_artery": ([(-6, -6, 58), (-14, -8, 100), (-24, -8, 150)], [6.5, 6, 5.5], 4.0, "aorta_hu"),
    "left_carotid": ([(8, 2, 62), (10, 2, 100), (12, 2, 150)], [4, 4, 4], 4.0, "aorta_hu"),
    "left_subclavian": ([(20, 18, 60), (30, 20, 100), (52, 22, 140)], [5, 5, 4.5], 4.0, "aorta_hu"),
    "ivc": ([(-36, 10, -122), (-30, 16, -170), (-26, 18, -250)], [12, 12, 12], 4.0, "ivc_hu"),
    "svc": ([(-50, -6, 150), (-48, -8, 40), (-46, -12, -20), (-44, -16, -62)], [9, 10, 10.5, 10.5], 5.0, "svc_hu"),
    "left_brachiocephalic_vein": ([(60, -20, 130), (10, -26, 100), (-40, -12, 90), (-48, -8, 80)],
                                  [6, 6, 6.5, 7], 4.0, "svc_hu"),
    "right_brachiocephalic_vein": ([(-72, 0, 150), (-54, -4, 110), (-49, -7, 95)], [7, 7.5, 8], 4.0, "svc_hu"),
    "rvot": ([(8, -46, -92), (12, -46, -70), (16, -42, -44)], [12, 13, 13], 4.0, "rv_hu"),
}
# airways: centreline, lumen radii, margin
_AIRWAYS: dict[str, tuple[list[tuple[float, float, float]], list[float], float]] = {
    "trachea": ([(-2, 14, 170), (-2, 15, 90), (-2, 16, 22)], [9, 9, 8.5], 4.0),
    "right_main_bronchus": ([(-2, 16, 24), (-26, 24, 12), (-44, 26, 0)], [7, 6.5, 6], 2.0),
    "left_main_bronchus": ([(-2, 16, 24), (22, 26, 5), (44, 30, -8)], [6.5, 6, 5.5], 2.0),
}
_OESOPHAGUS = ([(6, 33, 170), (8, 34, 0), (16, 30, -150), (30, 20, -240)], [6, 6, 6, 6], 4.0)


@dataclass(frozen=True)
class Vessel:
    """A painted tube: ``hu`` inside, ``margin_mm`` of mediastinal fat around it that lungs may not enter."""

    name: str
    tube: Tube
    hu: float
    margin_mm: float


@dataclass(frozen=True)
class Chamber:
    """A heart chamber: the outer surface (myocardium) and the blood pool inside."""

    name: str
    outer: Ellipsoid
    cavity: Ellipsoid
    hu: float


@dataclass(frozen=True)
class Mediastinum:
    """Heart chambers, vessels and airways (LPS mm) in painting order."""

    chambers: tuple[Chamber, ...]
    vessels: tuple[Vessel, ...]
    airways: tuple[Vessel, ...]  # hu unused: lumen is air, wall soft tissue
    oesophagus: Vessel
    spine_column: Vessel  # the vertebral column as a tube, only to keep lungs out
    myocardium_hu: float
    heart_core: Ellipsoid  # myocardium between the chambers

    def all_tubes(self) -> tuple[Vessel, ...]:
        return (*self.vessels, *self.airways, self.oesophagus, self.spine_column)

    def contains_points(self, points_mm: np.ndarray, extra: tuple[Vessel, ...] = ()) -> np.ndarray:
        """Boolean ``(N,)``: LPS points ``(N, 3)`` inside a structure or its fat margin."""
        p = np.asarray(points_mm, dtype=np.float32)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        inside = np.zeros(len(p), dtype=bool)
        for ch in self.chambers:
            inside |= ch.outer.grown(5.0).radial(x, y, z) < 1.0
        for ves in (*self.all_tubes(), *extra):
            pts, rad = ves.tube.points_mm, ves.tube.radii_mm
            lo = pts.min(axis=0) - rad.max() - ves.margin_mm
            hi = pts.max(axis=0) + rad.max() + ves.margin_mm
            near = np.flatnonzero(np.all((p >= lo) & (p <= hi), axis=1) & ~inside)
            if len(near):
                d = polyline_distance(x[near], y[near], z[near], pts, rad)
                inside[near[d < ves.margin_mm]] = True
        return inside


def _chamber(anat: Anatomy, name: str, center: np.ndarray, axes: np.ndarray,
             semi: tuple[float, float, float], wall_mm: float, hu: float) -> Chamber:
    c = anat.template(np.asarray(center) + np.asarray(anat.heart_shift))
    cav_semi = np.asarray(semi) * anat.heart_scale * anat.size_scale
    cavity = Ellipsoid(c, axes, cav_semi)
    return Chamber(name, cavity.grown(wall_mm), cavity, hu)


def build_mediastinum(anat: Anatomy) -> Mediastinum:
    """The heart, great vessels, airways, oesophagus and vertebral column of ``anat`` (LPS mm)."""
    con = anat.contrast
    long_axis = frame_from(HEART_AXIS * np.asarray(anat.scale), np.array([0.0, -1.0, 0.0]))
    posterior_axis = frame_from(HEART_AXIS * np.asarray(anat.scale), np.array([0.0, 1.0, 0.0]))
    upright = np.eye(3)
    rv_f = np.array([1.12, 1.3, 1.18]) if anat.rv_enlarged else np.ones(3)
    lv_f = 0.86 if anat.rv_enlarged else 1.0
    heart = np.array([16.0, -24.0, -104.0])
    chambers = (
        _chamber(anat, "right_atrium", heart + (-56, 4, 16), upright, (30, 28, 34), 2.5, con.ra_hu),
        _chamber(anat, "left_atrium", heart + (-10, 40, 36), upright, (37, 18, 24), 2.5, con.la_hu),
        _chamber(anat, "right_ventricle", heart + (-9, -22, -3), long_axis, tuple(np.array([46, 18, 38]) * rv_f), 4.0,
                 con.rv_hu),
        _chamber(anat, "left_ventricle", heart + (25, 9, -6), posterior_axis, tuple(np.array([48, 28, 28]) * lv_f),
                 11.0, con.lv_hu),
    )
    r_scale = anat.size_scale
    vessels = tuple(
        Vessel(name, spline_tube(anat.template(np.array(pts, dtype=float)), np.array(rad) * r_scale), getattr(con, level),
               margin)
        for name, (pts, rad, margin, level) in _VESSELS.items())
    airways = tuple(
        Vessel(name, spline_tube(anat.template(np.array(pts, dtype=float)), np.array(rad) * r_scale), AIR_HU, margin)
        for name, (pts, rad, margin) in _AIRWAYS.items())
    pts, rad, margin = _OESOPHAGUS
    oesophagus = Vessel("oesophagus", spline_tube(anat.template(np.array(pts, dtype=float)), np.array(rad) * r_scale),
                        40.0, margin)
    column = np.array([anat.anchor_mm] * 2) + np.array([[0.0, anat.vb_v, -400.0], [0.0, anat.vb_v, 400.0]])
    spine = Vessel("spine_column", Tube(column, np.array([anat.vb_r, anat.vb_r])), 0.0, 4.0)
    core = Ellipsoid(anat.template(heart + np.asarray(anat.heart_shift) + (-6, 4, 4)), long_axis,
                     np.array([52, 36, 44]) * anat.heart_scale * anat.size_scale)
    return Mediastinum(chambers, vessels, airways, oesophagus, spine, con.myocardium_hu, core)


def mark_mediastinum(mask: np.ndarray, geometry: Geometry, med: Mediastinum, extra: tuple[Vessel, ...] = ()) -> None:
    """Set ``mask`` (bool ``(Z, Y, X)``) inside every structure grown by its fat margin (lungs stay out)."""
    for ch in med.chambers:
        found = ellipsoid_box(ch.outer.grown(5.0), geometry)
        if found is not None:
            box, dist = found
            mask[box] |= dist < 0
    for ves in (*med.all_tubes(), *extra):
        mark_tube(mask, ves.tube, geometry, margin_mm=ves.margin_mm)


def paint_heart(hu: np.ndarray, geometry: Geometry, med: Mediastinum) -> None:
    """Paint the heart: a myocardial core joining the chambers, then each chamber's wall and blood pool,
    left ventricle last (its wall is the septum)."""
    paint_ellipsoid(hu, med.heart_core, geometry, med.myocardium_hu)
    for ch in med.chambers:
        paint_ellipsoid(hu, ch.outer, geometry, med.myocardium_hu)
        paint_ellipsoid(hu, ch.cavity, geometry, ch.hu)


def paint_vessels(hu: np.ndarray, geometry: Geometry, med: Mediastinum) -> None:
    """Paint oesophagus, systemic vessels and airways (soft-tissue wall around an air lumen)."""
    paint_tube(hu, med.oesophagus.tube, geometry, med.oesophagus.hu)
    for ves in med.vessels:
        paint_tube(hu, ves.tube, geometry, ves.hu)
    for air in med.airways:
        wall = Tube(air.tube.points_mm, air.tube.radii_mm * 1.0 + 1.8)
        paint_tube(hu, wall, geometry, 45.0)
    for air in med.airways:
        paint_tube(hu, air.tube, geometry, AIR_HU)
