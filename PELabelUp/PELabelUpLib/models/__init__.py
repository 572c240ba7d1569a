"""Networks and model folders.

A model folder (``metadata.json`` + weights) is the whole contract between training and inference:
:func:`~PELabelUpLib.models.folder.load_model` rebuilds the network from the metadata with
:func:`~PELabelUpLib.models.networks.build_network` and never imports training code.
``folder`` is torch-free at import time; ``networks`` imports torch.
"""
