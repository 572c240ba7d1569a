"""PELabelUp training pipeline: trainers and the engine they share (``training.engine``).

Imports :mod:`PELabelUpLib`; the core never imports this package. A trainer's product is a model folder
(:func:`PELabelUpLib.models.folder.save_model_folder`), the whole contract with inference.
Every trainer runs unchanged in one process or under ``torchrun`` (DistributedDataParallel).
"""
