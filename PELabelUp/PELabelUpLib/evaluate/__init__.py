"""Evaluation metrics (numpy, with scipy.ndimage for connected components; importable without torch).

Classification: :func:`roc_auc`, :func:`roc_curve`. Segmentation: :func:`dice`. Detection:
:func:`lesion_detection`, :func:`detection_f1`, :func:`froc`. Explanations: :func:`pointing_accuracy`.
"""

from __future__ import annotations

from .detection import FindingMatch, LesionDetection, LesionMatch, detection_f1, lesion_detection
from .froc import FrocCase, FrocCurve, froc, froc_case, sensitivity_at_fp
from .overlap import dice
from .pointing import DEFAULT_TOLERANCE_MM, pointing_accuracy, pointing_hits
from .roc import RocCurve, average_ranks, roc_auc, roc_curve

__all__ = [
    "DEFAULT_TOLERANCE_MM",
    "FindingMatch",
    "FrocCase",
    "FrocCurve",
    "LesionDetection",
    "LesionMatch",
    "RocCurve",
    "average_ranks",
    "detection_f1",
    "dice",
    "froc",
    "froc_case",
    "lesion_detection",
    "pointing_accuracy",
    "pointing_hits",
    "roc_auc",
    "roc_curve",
    "sensitivity_at_fp",
]
