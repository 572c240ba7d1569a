"""Trainer of the emboli segmenter (``pelabelup-segmenter``).

``sources`` (where each case's CT, territory and labels come from: ground truth, pseudo-masks, corrected masks,
the datastore), ``data`` (working-grid cache, patches), ``options`` (shared command-line options), ``records``
(model metadata, which label file each case used), ``lineage`` (versions and parents of fine-tuned models).
``python -m training.segmenter.train`` trains on pseudo-masks (weak supervision) or ground-truth masks (the
upper bound); ``python -m training.segmenter.evaluate`` measures a model's Dice against the ground truth;
``python -m training.finetune`` fine-tunes a model folder into a new version.
"""
