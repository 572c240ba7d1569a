"""The networks PELabelUp trains, built from a JSON-serialisable spec (``metadata["network"]``).

``spec = {"name": <one of NETWORKS>, "kwargs": {...}}``. Spatial axes follow the arrays: 3-D inputs are
``(N, C, Z, Y, X)``, 2-D slice inputs ``(N, C, Y, X)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn


class SliceClassifier(nn.Module):
    """2.5-D slice classifier: ``(N, C, H, W)`` -> one PE logit per slice ``(N, 1)``.

    Four stages of two 3x3 convolutions (batch norm, ReLU), each but the last followed by 2x2 max pooling,
    so the last feature map (``features.3``, the default Grad-CAM layer) keeps 1/8 of the input resolution
    (16x16 for 128x128 inputs). The head pools each feature map by both its maximum (a small clot is a local
    finding) and its mean, then a linear layer gives the logit.

    Args:
        in_channels: neighbouring slices plus auxiliary channels (e.g. the artery territory).
        widths: channels of the four stages.
        dropout: before the linear head.
        norm: ``batch`` (BatchNorm) or ``group`` (GroupNorm, 4 groups: identical results whatever the batch
            split, so a DDP run on CPU equals the single-process run).
    """

    def __init__(self, in_channels: int = 4, widths: Sequence[int] = (16, 32, 64, 96), dropout: float = 0.2,
                 norm: str = "batch") -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must list 4 stages, got {list(widths)}")
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")

        def norm_layer(width: int) -> nn.Module:
            return nn.BatchNorm2d(width) if norm == "batch" else nn.GroupNorm(min(4, width), width)

        stages = []
        previous = in_channels
        for i, width in enumerate(widths):
            layers: list[nn.Module] = [
                nn.Conv2d(previous, width, 3, padding=1, bias=False), norm_layer(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False), norm_layer(width), nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
            previous = width
        self.features = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * previous, 1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.features(x)
        pooled = torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


def _artery_unet(**kwargs: Any) -> nn.Module:
    from monai.networks.nets import UNet

    defaults = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": (16, 32, 64, 128),
                "strides": (2, 2, 2), "num_res_units": 1, "norm": "batch"}
    return UNet(**(defaults | kwargs))


def _dynunet(**kwargs: Any) -> nn.Module:
    from monai.networks.nets import DynUNet

    defaults = {"spatial_dims": 3, "in_channels": 2, "out_channels": 1,
                "kernel_size": [3, 3, 3, 3], "strides": [1, 2, 2, 2], "upsample_kernel_size": [2, 2, 2],
                "filters": [16, 32, 64, 128], "res_block": True}
    return DynUNet(**(defaults | kwargs))


NETWORKS = {
    "ArteryUNet": _artery_unet,
    "SliceClassifier": SliceClassifier,
    "DynUNet": _dynunet,
}


def build_network(spec: dict[str, Any]) -> nn.Module:
    """Build the network a model folder's ``metadata["network"]`` names.

    Raises:
        ValueError: unknown network name (the message lists the known ones) or bad keyword arguments.
    """
    name = spec.get("name")
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known: {', '.join(NETWORKS)}")
    try:
        return NETWORKS[name](**spec.get("kwargs", {}))
    except TypeError as exc:
        raise ValueError(f"network {name!r} rejects its arguments {spec.get('kwargs')}: {exc}") from exc
