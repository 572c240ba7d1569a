"""The names of the numeric precisions a user can ask for (torch-free, so command lines can list them).

Inference (``pelabelup analyze --precision``, :mod:`PELabelUpLib.models.inference`): ``auto`` runs the networks
in half precision where the hardware computes it natively (float16 on CUDA; bfloat16 for the 3-D networks on
CPUs with AMX or AVX512-BF16), ``float32`` never does.

Training (every trainer's and ``pelabelup finetune``'s ``--precision``, ``training.engine.precision``):
``auto`` is bfloat16 or float16 on CUDA and float32 on CPU (bit-reproducible CPU runs); ``off`` is float32;
``bf16`` and ``fp16`` force a half type where the device supports it.
"""

from __future__ import annotations

INFERENCE_PRECISIONS: tuple[str, ...] = ("auto", "float32")
TRAINING_PRECISIONS: tuple[str, ...] = ("auto", "off", "bf16", "fp16")
