"""Bones of the phantom: vertebrae with discs and posterior elements, ribs with costal cartilage, sternum.

All shapes are analytic in the body frame (see :mod:`.anatomy`): vertebral bodies are discs of cancellous
bone in a cortical shell repeating every ``vert_period`` mm with an intervertebral disc between them; ribs
run round the cavity wall from the transverse processes to the sternum, descending towards the front, so an
axial slice cuts several of them as short bright arcs. The scapulae are thin plates behind the upper ribs.
"""

from __future__ import annotations

import numpy as np

from ..geometry import Geometry
from .anatomy import Anatomy, cavity_factor
from .texture import NoiseField
from .voxels import Box, box_shape, index_box, world_coords

CORTEX_HU = 800.0
MARROW_HU = 240.0
DISC_HU = 90.0
CSF_HU = 25.0
CARTILAGE_HU = 130.0
RIB_START, RIB_BONE_END, RIB_END = 0.22, 2.35, 2.9  # angles (rad) from the back, round the cavity
SCAPULA_OFFSET_MM = 15.0  # scapular plate outside the rib ring
SCAPULA_HU = 480.0


def _period_offset(w: np.ndarray, phase: float, period: float) -> np.ndarray:
    """Position (mm, 0..period) of height ``w`` within its vertebral period."""
    return np.mod(w - np.float32(phase), np.float32(period))


def paint_spine(hu: np.ndarray, geometry: Geometry, anat: Anatomy, rng: np.random.Generator) -> None:
    """Paint vertebral bodies, discs, canal and posterior elements into ``hu`` (float32 ``(Z, Y, X)``)."""
    r = anat.vb_r
    lo = np.array([-55.0, anat.vb_v - r - 3.0, -1e4]) + np.asarray(anat.anchor_mm)
    hi = np.array([55.0, anat.vb_v + r + 60.0, 1e4]) + np.asarray(anat.anchor_mm)
    box = index_box(geometry, lo, hi)
    if box is None:
        return
    u, v, w = anat.to_body(*world_coords(geometry, box))
    shape = box_shape(box)
    sz, sy, sx = geometry.spacing_mm[2], geometry.spacing_mm[1], geometry.spacing_mm[0]
    grain = NoiseField(shape, (sz, sy, sx), 2.5, rng).sample(
        (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2])))
    ph = np.broadcast_to(_period_offset(w, anat.vert_phase, anat.vert_period), shape)
    in_disc = ph < np.float32(anat.disc_mm)
    endplate = (ph < np.float32(anat.disc_mm + 1.5)) | (ph > np.float32(anat.vert_period - 1.5))
    dv = v - np.float32(anat.vb_v)
    rho = np.broadcast_to(np.sqrt(u * u + dv * dv), shape)
    dvb = np.broadcast_to(dv, shape)
    body = (rho < np.float32(r)) & (dvb < np.float32(0.78 * r))
    cortex = (rho > np.float32(r - 1.8)) | (dvb > np.float32(0.78 * r - 1.8)) | endplate
    region = hu[box]
    bone = body & ~in_disc
    region[bone] = np.where(cortex[bone], CORTEX_HU, MARROW_HU + 45.0 * grain[bone])
    region[body & in_disc & (rho < np.float32(r - 0.8))] = DISC_HU
    # posterior elements around the canal
    rc = 7.5
    cv = anat.vb_v + 0.78 * r + rc + 1.0
    dvc = v - np.float32(cv)
    rho_c = np.broadcast_to(np.sqrt(u * u + dvc * dvc), shape)
    dvc_b = np.broadcast_to(dvc, shape)
    uabs = np.broadcast_to(np.abs(u), shape)
    span = anat.vert_period - anat.disc_mm
    lamina = (ph > np.float32(anat.disc_mm + 0.1 * span)) & (ph < np.float32(anat.vert_period - 0.2 * span))
    arch = (rho_c > rc) & (rho_c < rc + 5.0) & (dvc_b > -6.0) & lamina
    mid = (ph > np.float32(anat.disc_mm + 0.2 * span)) & (ph < np.float32(anat.vert_period - 0.25 * span))
    # transverse processes point back and out; spinous processes back and down
    transverse = (np.abs(dvc_b - 0.45 * (uabs - rc)) < 3.5) & (uabs > rc + 2.0) & (uabs < rc + 20.0) & mid
    depth = np.maximum(dvc_b - rc, 0.0)
    slope = np.mod(ph + np.float32(0.55) * depth, np.float32(anat.vert_period))
    spinous = (uabs < 3.0) & (dvc_b > rc) & (dvc_b < rc + 36.0) & (slope > np.float32(anat.disc_mm + 0.35 * span)) \
        & (slope < np.float32(anat.vert_period - 0.1 * span))
    posterior = arch | transverse | spinous
    region[posterior] = 520.0 + 60.0 * grain[posterior]
    region[rho_c < rc] = CSF_HU


def paint_ribs(hu: np.ndarray, box: Box, geometry: Geometry, anat: Anatomy) -> None:
    """Paint ribs (cortex, marrow), costal cartilage and scapulae into ``hu[box]`` (float32 HU), slab ``box``."""
    u, v, w = anat.to_body(*world_coords(geometry, box))
    shape = box_shape(box)
    f = cavity_factor(anat, w)
    a_r = np.float32(anat.cav_a) * f + np.float32(7.0)
    b_r = np.float32(anat.cav_b) * f + np.float32(7.0)
    dv = v - np.float32(anat.cav_v)
    xn, yn = np.abs(u) / a_r, dv / b_r
    q = xn * xn + yn * yn - np.float32(0.3) * xn * xn * yn * yn
    rho = np.sqrt(np.maximum(q, 1e-6))
    radius = np.sqrt(u * u + dv * dv) / rho  # distance from the centre to the ring in this direction
    dr = (rho - 1.0) * radius
    band = np.broadcast_to((np.abs(dr) < 6.0) | (np.abs(dr - SCAPULA_OFFSET_MM) < 3.0), shape)
    idx = np.nonzero(band)
    if len(idx[0]) == 0:
        return
    pick = [np.broadcast_to(a, shape)[idx] for a in (xn, yn, dr, w)]
    xn_b, yn_b, dr_b, w_b = pick
    theta = np.arctan2(xn_b, yn_b)  # 0 at the back, pi at the front
    region = hu[box]
    # scapulae: thin plates on the back of the rib cage, upper chest
    s = anat.scale[2]
    plate = (np.abs(dr_b - SCAPULA_OFFSET_MM) < 2.2) & (theta > 0.45) & (theta < 1.3) \
        & (w_b > np.float32(-45.0 * s)) & (w_b < np.float32(110.0 * s))
    sel = tuple(i[plate] for i in idx)
    region[sel] = np.float32(SCAPULA_HU)
    on_rib = (theta > RIB_START) & (theta < RIB_END)
    frac = np.clip((theta - RIB_START) / (np.pi - RIB_START), 0.0, 1.0)
    drop = np.float32(anat.rib_drop) * frac ** np.float32(1.2)
    phase = (w_b + drop - np.float32(anat.rib_phase)) / np.float32(anat.vert_period)
    level = np.round(phase)
    dw = (phase - level) * np.float32(anat.vert_period)
    top = anat.rib_phase + level * anat.vert_period
    on_rib &= top < anat.apex_w + 8.0
    half_t = np.float32(4.2) - np.float32(1.2) * frac  # ribs get thinner and taller towards the front
    half_h = np.float32(5.5) + np.float32(2.0) * frac
    e = (dr_b / half_t) ** 2 + (dw / half_h) ** 2
    inside = on_rib & (e < 1.0)
    e_in = (dr_b / (half_t - 1.3)) ** 2 + (dw / (half_h - 1.3)) ** 2
    bone_part = theta < RIB_BONE_END
    value = np.where(bone_part, np.where(e_in < 1.0, MARROW_HU + 20.0, CORTEX_HU - 100.0), CARTILAGE_HU)
    sel = tuple(i[inside] for i in idx)
    region[sel] = value[inside].astype(np.float32)


def paint_sternum(hu: np.ndarray, geometry: Geometry, anat: Anatomy) -> None:
    """Paint the sternum (manubrium above, body below) just in front of the cavity, midline."""
    s = anat.scale
    w_lo, w_hi = -150.0 * s[2], 75.0 * s[2]
    lo = np.array([anat.midline_u - 30.0, anat.cav_v - anat.cav_b - 20.0, w_lo]) + np.asarray(anat.anchor_mm)
    hi = np.array([anat.midline_u + 30.0, anat.cav_v - anat.cav_b * 0.5, w_hi]) + np.asarray(anat.anchor_mm)
    box = index_box(geometry, lo, hi)
    if box is None:
        return
    u, v, w = anat.to_body(*world_coords(geometry, box))
    shape = box_shape(box)
    front = np.float32(anat.cav_v) - np.float32(anat.cav_b) * cavity_factor(anat, w)
    vc = front - np.float32(6.5)
    half_w = np.where(w > np.float32(35.0 * s[2]), np.float32(24.0), np.float32(15.0))
    xn = (u - np.float32(anat.midline_u)) / half_w
    yn = (v - vc) / np.float32(6.5)
    e = np.broadcast_to(xn * xn + yn * yn, shape)
    xi = (u - np.float32(anat.midline_u)) / (half_w - 1.5)
    yi = (v - vc) / np.float32(5.0)
    e_in = np.broadcast_to(xi * xi + yi * yi, shape)
    within = np.broadcast_to((w > np.float32(w_lo)) & (w < np.float32(w_hi)), shape)
    region = hu[box]
    region[within & (e < 1.0)] = CORTEX_HU - 100.0
    region[within & (e_in < 1.0)] = MARROW_HU
