"""Random rotation and scaling of training patches (spatial augmentation of the artery model).

The phantoms draw their anatomy from one generator, so a network trained on them alone learns the phantoms'
calibres and angles: on a real chest CTA crop the bundled model's recall halves when the image is merely
rescaled by 10 %. A random affine per patch (a rotation, mostly in the axial plane, an isotropic zoom and a
small stretch per axis) shows the same anatomy at other sizes and orientations.
That alone did not bring the crop's right and left pulmonary arteries into the territory (docs/findings.md).

The patch is resampled from a larger crop of the working grid around the same centre, so its corners hold
real neighbours instead of padding. Matrices act on ``(Z, Y, X)`` voxel offsets from the patch centre and
map an output voxel to the source voxel it reads (``scipy.ndimage.affine_transform``'s convention).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def _rotation(axis: int, degrees: float) -> np.ndarray:
    """Rotation by ``degrees`` about index axis ``axis`` (0 = Z, 1 = Y, 2 = X) of ``(Z, Y, X)`` offsets."""
    a, b = [i for i in range(3) if i != axis]
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def random_affine(rng: np.random.Generator, *, rotate_deg: Sequence[float], scale: Sequence[float],
                  stretch: float) -> np.ndarray:
    """A random output-to-source matrix ``(3, 3)`` for ``(Z, Y, X)`` offsets.

    Args:
        rotate_deg: largest rotation about the Z, Y and X axes, degrees (uniform in +-each).
        scale: range of the zoom (log-uniform); above 1 the anatomy looks larger in the patch.
        stretch: each axis is zoomed once more by a factor uniform in ``1 +- stretch``.
    """
    rotation = np.eye(3)
    for axis, limit in enumerate(rotate_deg):
        rotation = rotation @ _rotation(axis, float(rng.uniform(-limit, limit)))
    zoom = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))) * rng.uniform(1 - stretch, 1 + stretch, size=3)
    return rotation @ np.diag(1.0 / zoom)


def source_size(matrix: np.ndarray, patch_zyx: Sequence[int]) -> tuple[int, int, int]:
    """The crop ``(Z, Y, X)`` that holds every source voxel a ``patch_zyx`` output reads through ``matrix``
    (with a voxel to spare for linear interpolation); odd sizes keep the centre on a voxel."""
    half = np.abs(matrix) @ ((np.asarray(patch_zyx, dtype=float) - 1) / 2)
    return tuple(int(2 * np.ceil(h) + 3) for h in half)


def warp_patch(source: np.ndarray, matrix: np.ndarray, patch_zyx: Sequence[int], *, order: int,
               fill: float) -> np.ndarray:
    """``source`` (centred on the patch centre) resampled through ``matrix`` to ``patch_zyx``, ``float32``.

    ``order`` 1 for images and for labels (threshold the result at 0.5); outside ``source``: ``fill``.
    """
    centre_out = (np.asarray(patch_zyx, dtype=float) - 1) / 2
    centre_src = (np.asarray(source.shape, dtype=float) - 1) / 2
    offset = centre_src - matrix @ centre_out
    return ndimage.affine_transform(source.astype(np.float32, copy=False), matrix, offset=offset,
                                    output_shape=tuple(int(p) for p in patch_zyx), order=order, mode="constant",
                                    cval=float(fill), prefilter=False)
