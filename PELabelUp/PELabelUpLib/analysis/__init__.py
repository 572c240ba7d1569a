"""The analysis contract: one CT (or a batch) -> PE probability, heatmap, masks and a Slicer segmentation file.

:func:`~.run.analyze` is the stable call behind ``pelabelup analyze``; :mod:`.batch` runs many inputs (and
under ``torchrun``); :mod:`.serve` is the long-lived worker behind ``pelabelup serve`` (its requests:
:mod:`.requests`); :mod:`.progress` is the JSON-lines progress protocol a parent process (the Slicer module)
reads; :mod:`.outputs` writes the output folder whole or not at all. Importing this package imports nothing
heavy: ``run``, ``batch``, ``serve``, ``model_set`` and ``device`` import torch; ``progress``, ``requests``,
``interrupt``, ``outputs`` and ``segments`` do not.
"""
