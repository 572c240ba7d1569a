"""Trainer of the artery territory model (``pelabelup-arteries``): data, training, evaluation.

``python -m training.artery.train`` writes the model folder; ``python -m training.artery.evaluate`` measures
its Dice on held-out phantoms and on the real CTA crop and records the numbers in its metadata.
"""
