"""The phantom's patient: drawn body measurements and contrast levels, and the torso painter.

Anatomy is defined in a *body frame*: LPS axes (``u`` = x towards the patient's left, ``v`` = y towards the
back, ``w`` = z towards the head), millimetres, origin at the bifurcation of the pulmonary trunk. The body
frame is the LPS world shifted by ``anchor_mm`` (the patient lies straight on the table; oblique grids are
tilted relative to the patient, not the other way round). Template coordinates of organs are given for an average
adult and stretched per study by ``scale`` (left-right, antero-posterior, cranio-caudal).

The torso painter fills skin, subcutaneous fat, chest-wall muscle, the thoracic cavity (lungs with texture
and a dependent-density gradient, mediastinal fat) and the upper abdomen below the diaphragm domes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..geometry import Geometry
from .texture import NoiseField
from .voxels import Box, world_coords

AIR_HU = -1000.0
RIGHT_LUNG, LEFT_LUNG = 1, 2
# lobes: right upper / middle / lower, left upper / lower
LOBES = ("RUL", "RML", "RLL", "LUL", "LLL")


@dataclass(frozen=True)
class Contrast:
    """Attenuation of blood pools in the pulmonary-arterial phase (HU), one value per study."""

    pa_hu: float
    rv_hu: float
    ra_hu: float
    svc_hu: float
    aorta_hu: float
    lv_hu: float
    la_hu: float
    vein_hu: float
    ivc_hu: float
    myocardium_hu: float


def draw_contrast(rng: np.random.Generator) -> Contrast:
    """Pulmonary arteries 250-550 HU; right heart as bright; SVC densest; aorta and left heart dimmer."""
    pa = float(rng.uniform(250, 550))
    aorta = float(np.clip(min(rng.uniform(150, 250), pa - rng.uniform(50, 130)), 110, 250))
    return Contrast(
        pa_hu=pa,
        rv_hu=pa * float(rng.uniform(0.97, 1.08)),
        ra_hu=pa * float(rng.uniform(1.0, 1.25)),
        svc_hu=float(min(1400.0, pa * rng.uniform(1.4, 2.4))),
        aorta_hu=aorta,
        lv_hu=aorta * float(rng.uniform(0.95, 1.05)),
        la_hu=aorta * float(rng.uniform(0.88, 1.0)),
        vein_hu=float(np.clip(min(rng.uniform(100, 200), aorta * rng.uniform(0.85, 1.0)), 90, 200)),
        ivc_hu=float(rng.uniform(60, 140)),
        myocardium_hu=float(rng.uniform(95, 135)),
    )


CONTRAST_PHASES = ("pulmonary", "mixed")
DEFAULT_CONTRAST_PHASE = CONTRAST_PHASES[0]  # what draw_contrast draws


def mix_systemic_contrast(contrast: Contrast, rng: np.random.Generator) -> Contrast:
    """The same study with its aorta, left heart and pulmonary veins 0.4-1.0 times as bright as the arteries.

    :func:`draw_contrast` draws a pure pulmonary-arterial phase: the aorta 110-250 HU and always 50-130 HU below
    the pulmonary arteries. Real CTPA series are often taken later in the bolus, when the left heart and the
    aorta are nearly as bright as the pulmonary trunk (a real early-arterial crop: aorta about 0.9 of it). The
    aorta is drawn from 0.4 to 1.0 times the arteries' HU; the left ventricle and atrium keep their ratio to it,
    and the pulmonary veins, which carry the left atrium's blood, read 0.8-1.0 of the atrium (at least the
    pure phase's value).
    """
    aorta = contrast.pa_hu * float(rng.uniform(0.4, 1.0))
    scale = aorta / contrast.aorta_hu
    la = contrast.la_hu * scale
    return replace(contrast, aorta_hu=aorta, lv_hu=contrast.lv_hu * scale, la_hu=la,
                   vein_hu=max(contrast.vein_hu, la * float(rng.uniform(0.8, 1.0))))


@dataclass(frozen=True)
class Anatomy:
    """Measurements of one phantom patient. Lengths in mm in the body frame (see module docstring)."""

    anchor_mm: tuple[float, float, float]
    scale: tuple[float, float, float]
    body_a: float  # half width of the body (left-right)
    body_b: float  # half depth of the body (antero-posterior)
    body_v: float  # antero-posterior centre of the body
    fat_mm: float  # subcutaneous fat thickness
    cav_a: float  # half width of the thoracic cavity
    cav_b: float
    cav_v: float
    wide_w: float  # height where the cavity is widest; it narrows above, to the lung apices
    apex_w: float
    dome_right_w: float  # top of the right / left diaphragm dome
    dome_left_w: float
    dome_depth_mm: float
    midline_u: float
    fissure_w: float  # oblique fissure: lower lobe where w - fissure_w < fissure_slope * (v - fissure_v)
    fissure_v: float
    fissure_slope: float
    horizontal_fissure_w: float
    vb_v: float  # vertebral bodies: antero-posterior centre, radius, period (vertebra + disc), phase
    vb_r: float
    vert_period: float
    vert_phase: float
    disc_mm: float
    rib_drop: float  # how far ribs descend from back to front
    rib_phase: float
    lung_hu: float
    lung_gravity_hu: float  # extra density of the dependent (posterior) lung
    fat_hu: float
    muscle_hu: float
    liver_hu: float
    spleen_hu: float
    heart_scale: float
    heart_shift: tuple[float, float, float]
    table_v: float | None  # patient table (curved carbon shell) under the back; None: out of the picture
    contrast: Contrast
    rv_enlarged: bool = False

    def to_body(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS world (mm) -> body frame ``(u, v, w)`` (mm); arrays keep their (broadcastable) shapes."""
        ax, ay, az = (np.float32(a) for a in self.anchor_mm)
        return x - ax, y - ay, z - az

    def template(self, points: np.ndarray) -> np.ndarray:
        """Template points ``(..., 3)`` (average adult, body frame) -> LPS world mm for this patient."""
        return np.asarray(self.anchor_mm) + np.asarray(points, dtype=float) * np.asarray(self.scale)

    @property
    def size_scale(self) -> float:
        """Geometric mean of the left-right and antero-posterior scale (for radii)."""
        return float(np.sqrt(self.scale[0] * self.scale[1]))

    def params(self) -> dict[str, Any]:
        """JSON-serialisable record of the draws."""
        out = asdict(self)
        out["anchor_mm"] = [round(float(a), 3) for a in self.anchor_mm]
        return out


def draw_anatomy(rng: np.random.Generator, rv_enlarged: bool = False) -> Anatomy:
    """Draw a patient: body habitus, organ positions, tissue and contrast HU, world position."""
    s_lr, s_ap, s_si = (float(v) for v in rng.uniform([0.88, 0.88, 0.92], [1.12, 1.12, 1.08]))
    cav_a, cav_b, cav_v = 130.0 * s_lr, 72.0 * s_ap, 12.0 * s_ap
    muscle_side = float(rng.uniform(10, 18))
    muscle_front = float(rng.uniform(12, 22))
    muscle_back = float(rng.uniform(50, 62)) * s_ap
    fat = float(rng.uniform(6, 30))
    anchor = (float(rng.normal(0, 12)), float(rng.uniform(-60, 10)), float(rng.uniform(-330, 60)))
    return Anatomy(
        anchor_mm=anchor,
        scale=(s_lr, s_ap, s_si),
        body_a=cav_a + muscle_side + fat,
        body_b=cav_b + (muscle_front + muscle_back) / 2 + fat,
        body_v=cav_v + (muscle_back - muscle_front) / 2,
        fat_mm=fat,
        cav_a=cav_a,
        cav_b=cav_b,
        cav_v=cav_v,
        wide_w=-40.0 * s_si,
        apex_w=float(rng.uniform(105, 130)) * s_si,
        dome_right_w=float(rng.uniform(-125, -100)) * s_si,
        dome_left_w=float(rng.uniform(-145, -118)) * s_si,
        dome_depth_mm=float(rng.uniform(40, 55)) * s_si,
        midline_u=4.0 * s_lr,
        fissure_w=-10.0 * s_si,
        fissure_v=20.0 * s_ap,
        fissure_slope=float(rng.uniform(1.1, 1.5)) * s_si / s_ap,
        horizontal_fissure_w=float(rng.uniform(-15, 5)) * s_si,
        vb_v=cav_v + cav_b - 36.0 * s_ap,
        vb_r=float(rng.uniform(16, 20)) * np.sqrt(s_lr * s_ap),
        vert_period=float(rng.uniform(25, 30)) * s_si,
        vert_phase=float(rng.uniform(0, 30)),
        disc_mm=float(rng.uniform(4, 6.5)),
        rib_drop=float(rng.uniform(70, 110)) * s_si,
        rib_phase=float(rng.uniform(0, 30)),
        lung_hu=float(rng.uniform(-885, -835)),
        lung_gravity_hu=float(rng.uniform(20, 70)),
        fat_hu=float(rng.uniform(-110, -85)),
        muscle_hu=float(rng.uniform(38, 55)),
        liver_hu=float(rng.uniform(55, 80)),
        spleen_hu=float(rng.uniform(48, 70)),
        heart_scale=float(rng.uniform(0.9, 1.08)),
        heart_shift=tuple(float(d) for d in rng.uniform(-5, 5, size=3)),
        table_v=float(cav_v + (muscle_back - muscle_front) / 2 + cav_b + (muscle_front + muscle_back) / 2 + fat
                      + rng.uniform(3, 20)) if rng.random() < 0.85 else None,
        contrast=draw_contrast(rng),
        rv_enlarged=rv_enlarged,
    )


def _squircle(x: np.ndarray, y: np.ndarray, k: float) -> np.ndarray:
    """``x^2 + y^2 - k x^2 y^2``: below 1 inside a rounded box (k=0: ellipse; k->1: squarer)."""
    x2 = x * x
    y2 = y * y
    return x2 + y2 - np.float32(k) * x2 * y2


def cavity_factor(anat: Anatomy, w: np.ndarray) -> np.ndarray:
    """Width factor (0..1) of the thoracic cavity at height ``w``: 1 below ``wide_w``, 0 at the lung apex."""
    t = np.clip((w - np.float32(anat.wide_w)) / np.float32(anat.apex_w - anat.wide_w), 0.0, 1.0)
    return np.sqrt(np.clip(1.0 - t * t * np.sqrt(t), 0.0, 1.0))


def in_cavity(anat: Anatomy, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Boolean: inside the thoracic (and upper abdominal) cavity, body-frame mm."""
    f = np.maximum(cavity_factor(anat, w), np.float32(1e-3))
    inside = _squircle(u / (np.float32(anat.cav_a) * f), (v - np.float32(anat.cav_v)) / (np.float32(anat.cav_b) * f),
                       0.3) < 1.0
    # the spine and its posterior elements indent the cavity from behind (paravertebral gutters either side)
    nu = u / np.float32(anat.vb_r + 14.0)
    nv = (v - np.float32(anat.vb_v + 42.0)) / np.float32(40.0)
    return inside & (nu * nu + nv * nv > 1.0)


def dome_w(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height (body-frame w, mm) of the diaphragm under ``(u, v)``: right dome for u < midline, else left."""
    right = u < np.float32(anat.midline_u)
    du = np.abs(u - np.float32(anat.midline_u)) - np.float32(0.45 * anat.cav_a)
    dv = v - np.float32(anat.cav_v - 0.15 * anat.cav_b)
    r2 = (du / np.float32(0.6 * anat.cav_a)) ** 2 + (dv / np.float32(0.9 * anat.cav_b)) ** 2
    top = np.where(right, np.float32(anat.dome_right_w), np.float32(anat.dome_left_w))
    return top - np.float32(anat.dome_depth_mm) * np.minimum(r2, 2.5)


def in_central_band(anat: Anatomy, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The retrosternal fat of the anterior mediastinum above the heart (boolean).

    A narrow wedge behind the sternum (the anterior junction), widening backwards to the great vessels.
    """
    front = np.float32(anat.cav_v - anat.cav_b)
    depth = v - front
    # tapers to nothing at its back (among the great vessels) and its bottom (on the heart): no straight edges
    taper = np.minimum(np.clip((np.float32(60.0 * anat.scale[1]) - depth) / np.float32(25.0), 0.0, 1.0),
                       np.clip((w + np.float32(50.0 * anat.scale[2])) / np.float32(25.0), 0.0, 1.0))
    half = (np.float32(2.5) + np.float32(0.2) * depth) * taper
    return np.abs(u - np.float32(anat.midline_u)) < half


def lung_side(anat: Anatomy, u: np.ndarray) -> np.ndarray:
    """1 (right lung) where ``u`` < midline, else 2 (left lung)."""
    return np.where(u < np.float32(anat.midline_u), RIGHT_LUNG, LEFT_LUNG).astype(np.uint8)


def lung_points(anat: Anatomy, points_mm: np.ndarray, in_mediastinum: np.ndarray) -> np.ndarray:
    """Lung label (0 none, 1 right, 2 left) of LPS points ``(N, 3)``; ``in_mediastinum`` ``(N,)`` boolean."""
    u, v, w = anat.to_body(*(np.asarray(points_mm, dtype=np.float32).T))
    inside = in_cavity(anat, u, v, w) & (w > dome_w(anat, u, v)) & ~in_mediastinum & ~in_central_band(anat, u, v, w)
    return np.where(inside, lung_side(anat, u), 0).astype(np.uint8)


def lobe_of(anat: Anatomy, points_mm: np.ndarray) -> np.ndarray:
    """Lobe index (into :data:`LOBES`) of LPS points ``(N, 3)`` assumed inside a lung."""
    u, v, w = anat.to_body(*(np.asarray(points_mm, dtype=np.float32).T))
    lower = (w - anat.fissure_w) < anat.fissure_slope * (v - anat.fissure_v)
    right = u < anat.midline_u
    upper_right = w > anat.horizontal_fissure_w
    return np.where(right, np.where(lower, 2, np.where(upper_right, 0, 1)), np.where(lower, 4, 3)).astype(int)


# tissue classes of the torso painter: (base HU attribute or value, texture amplitude HU)
_AIR, _SKIN, _FAT, _MUSCLE, _LIVER, _SPLEEN, _MEDIASTINUM, _LUNG, _TABLE_SHELL, _TABLE_FOAM = range(10)
TABLE_HALF_WIDTH_MM = 225.0


def _table(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Tissue class of the patient table (a cradle curving up at the sides): shell, foam or air."""
    if anat.table_v is None:
        return np.uint8(_AIR)
    depth = v - (np.float32(anat.table_v) - np.float32(6e-4) * u * u)
    inside = np.abs(u) < np.float32(TABLE_HALF_WIDTH_MM)
    shell = ((depth >= 0) & (depth < 2.5)) | ((depth >= 28) & (depth < 30.5))
    foam = (depth >= 2.5) & (depth < 28)
    return np.where(inside & shell, _TABLE_SHELL, np.where(inside & foam, _TABLE_FOAM, _AIR)).astype(np.uint8)


def paint_torso(hu: np.ndarray, lungs: np.ndarray, box: Box, geometry: Geometry, anat: Anatomy,
                noise: NoiseField, mediastinum: np.ndarray) -> None:
    """Paint the torso into ``hu[box]`` (float32 HU) and the lung labels into ``lungs[box]``.

    ``mediastinum`` is the boolean ``(Z, Y, X)`` mask of mediastinal structures (with their fat margins)
    that the lungs must not enter. Each voxel gets a tissue class, then ``base + amplitude * texture``.
    """
    u, v, w = anat.to_body(*world_coords(geometry, box))
    tex = noise.sample(box)
    vb = v - np.float32(anat.body_v)
    a, b, fat = anat.body_a, anat.body_b, anat.fat_mm
    body = _squircle(u / np.float32(a), vb / np.float32(b), 0.45) < 1.0
    skin_in = _squircle(u / np.float32(a - 1.5), vb / np.float32(b - 1.5), 0.45) < 1.0
    muscle = _squircle(u / np.float32(a - fat), vb / np.float32(b - fat), 0.45) < 1.0
    wall = np.where(muscle, _MUSCLE, np.where(skin_in, _FAT, np.where(body, _SKIN, _table(anat, u, v)))).astype(np.uint8)
    cavity = in_cavity(anat, u, v, w)
    below = w < dome_w(anat, u, v)
    abdomen = np.where(u < np.float32(anat.midline_u + 10.0), _LIVER, _SPLEEN).astype(np.uint8)
    medi = mediastinum[box] | in_central_band(anat, u, v, w)
    chest = np.where(medi, np.uint8(_MEDIASTINUM), np.uint8(_LUNG))
    inner = np.where(below, abdomen, chest)
    cls = np.where(cavity, inner, wall)
    base = np.array([AIR_HU, 25.0, anat.fat_hu, anat.muscle_hu, anat.liver_hu, anat.spleen_hu, anat.fat_hu + 8.0,
                     anat.lung_hu, 250.0, -950.0], dtype=np.float32)
    amp = np.array([0.0, 0.0, 10.0, 6.0, 6.0, 6.0, 10.0, 22.0, 0.0, 0.0], dtype=np.float32)
    out = base[cls] + amp[cls] * tex
    lung = cls == _LUNG
    gravity = np.float32(anat.lung_gravity_hu / (2 * anat.cav_b)) * (v - np.float32(anat.cav_v))
    out += np.where(lung, gravity, np.float32(0.0))
    hu[box] = out
    lungs[box] = np.where(lung, lung_side(anat, u), np.uint8(0))
