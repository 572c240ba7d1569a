"""PELabelUp core: pulmonary-embolism detection and label-up from image-level labels.

This package is importable without Qt and without the 3D Slicer application. Layers point one way:
``io`` -> ``preprocessing`` -> models -> explain -> pseudomask -> analyze -> front ends (CLI, MRML, training).
"""

from __future__ import annotations

__version__ = "0.1.0"
