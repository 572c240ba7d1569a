"""Which torch device an analysis runs on (``auto`` | ``cpu`` | ``cuda``)."""

from __future__ import annotations

from typing import Literal

import torch

from ..models.inference import precision_record

DeviceChoice = Literal["auto", "cpu", "cuda"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "auto", *, local_rank: int | None = None) -> torch.device:
    """``auto``: CUDA when available, else the CPU; ``cuda``: CUDA or an error; ``cpu``: the CPU.

    Args:
        choice: one of :data:`DEVICE_CHOICES`.
        local_rank: under torchrun, this process's GPU index (``cuda:<local_rank>``); ``None``: the current GPU.

    Raises:
        ValueError: unknown choice, or ``cuda`` asked for where torch sees no CUDA device.
    """
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {choice!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device here (use --device auto or cpu)")
    if local_rank is None:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def describe_device(device: torch.device, precision: str = "auto") -> dict[str, object]:
    """What ``result.json`` records about the device: name, kind, precision, torch version.

    ``mixed_precision`` is true when any network ran under autocast (the 3-D networks do whenever one does);
    ``precision`` says which dtype each kind of network ran in
    (:func:`~PELabelUpLib.models.inference.precision_record`).
    """
    record = precision_record(device, precision)
    info: dict[str, object] = {"device": str(device), "type": device.type,
                               "mixed_precision": record["networks_3d"] != "float32",
                               "precision": record, "torch": torch.__version__}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    return info
