"""Real 3-D networks with fixed weights, for tests that need an artery model whose output is known."""

from __future__ import annotations

import torch
from torch import nn


class ThresholdNet(nn.Module):
    """A real 3-D network with fixed weights: logit = 40 * (windowed input - 0.5), i.e. the upper half of the
    input window is artery. ``calls`` counts the forward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(40.0)
            self.conv.bias.fill_(-20.0)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x)
