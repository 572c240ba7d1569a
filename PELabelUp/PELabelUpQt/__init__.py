"""Qt helpers of the PELabelUp module: what drives its widgets, kept out of ``PELabelUp.py``.

These files need Slicer's Python (``qt``, ``slicer``) and are imported by the module file only; the core,
``PELabelUpLib``, stays free of Qt and of the Slicer application. Strings users see go through ``_()``.
"""
