"""Tiny real torch networks for the explainer tests (built here, no weights on disk).

Fixtures are nouns: ``a_small_cnn`` (random CNN with batch norm, 2-D or 3-D), ``a_region_model`` (logit =
mean input intensity over a known box), ``a_cubic_model`` (logit = sum of cubes, IG known in closed form).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

# Box of the region model, per spatial dimensionality: slices along the input's spatial axes.
REGION = {
    2: (slice(4, 12), slice(18, 28)),
    3: (slice(1, 6), slice(2, 8), slice(3, 9)),
}
SHAPES = {2: (33, 30), 3: (12, 14, 19)}  # odd, non-square grids: upsampling must hit them exactly


def conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv3d


class SmallCNN(nn.Module):
    """conv-bn-act, strided conv-act, strided conv-act, global average pool, linear: ``(N, n_logits)``."""

    def __init__(self, dims: int, in_channels: int = 3, n_logits: int = 1, smooth: bool = False) -> None:
        super().__init__()
        act = nn.Softplus if smooth else nn.ReLU
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        pool = nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d
        layers: list[nn.Module] = [conv(dims)(in_channels, 6, 3, padding=1)]
        layers += [nn.Identity() if smooth else norm(6), act()]
        layers += [conv(dims)(6, 8, 3, padding=1, stride=2), act()]
        layers += [conv(dims)(8, 8, 3, padding=1, stride=2), nn.Tanh() if smooth else act()]
        # features.0 conv, .2 act (stride 1), .4 act (stride 2), .5 last conv, .6 act (stride 4)
        self.features = nn.Sequential(*layers)
        self.pool = pool(1)
        self.head = nn.Linear(8, n_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class RegionMeanModel(nn.Module):
    """Logit = mean input intensity inside ``REGION[dims]``, computed as a real two-layer CNN.

    ``features`` = 1x1 conv to two channels (+x, -x) then ReLU; ``head`` = 1x1 conv with weights (1, -1)
    then the masked mean, so ``logit = mean_R(relu(x) - relu(-x)) = mean_R(x)``.
    """

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.features = nn.Sequential(conv(dims)(1, 2, 1, bias=False), nn.ReLU())
        self.head = conv(dims)(2, 1, 1, bias=False)
        with torch.no_grad():
            self.features[0].weight.view(2)[:] = torch.tensor([1.0, -1.0])
            self.head.weight.view(2)[:] = torch.tensor([1.0, -1.0])
        region = torch.zeros(SHAPES[dims])
        region[REGION[dims]] = 1.0
        self.register_buffer("region", region)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mapped = self.head(self.features(x))[:, 0]
        return ((mapped * self.region).flatten(1).sum(1) / self.region.sum()).unsqueeze(1)


class CubicModel(nn.Module):
    """Logit = sum of cubes of all input values; IG from a zero baseline is ``x ** 3`` exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(3).flatten(1).sum(1, keepdim=True)


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def spatial_dims(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def a_small_cnn(spatial_dims: int) -> SmallCNN:
    torch.manual_seed(1234)
    return SmallCNN(spatial_dims).eval()


@pytest.fixture
def a_smooth_cnn(spatial_dims: int) -> SmallCNN:
    """Softplus/tanh CNN with its weights scaled up 4x, so that the logit is clearly curved along an IG
    path (a 4-step trapezoid misses the 2-D logit gap by over 10 %)."""
    torch.manual_seed(99)
    model = SmallCNN(spatial_dims, smooth=True).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(4.0)
    return model


@pytest.fixture
def a_batch(spatial_dims: int) -> torch.Tensor:
    """Three random 3-channel samples on the odd grid of ``SHAPES``."""
    generator = torch.Generator().manual_seed(7)
    return torch.rand(3, 3, *SHAPES[spatial_dims], generator=generator)


@pytest.fixture
def a_region_model(spatial_dims: int) -> RegionMeanModel:
    return RegionMeanModel(spatial_dims).eval()


@pytest.fixture
def a_region_image(spatial_dims: int) -> torch.Tensor:
    """``(1, 1, *spatial)``: faint noise, a bright box inside the region, a dark box outside it."""
    generator = torch.Generator().manual_seed(3)
    image = 0.05 * torch.rand(1, 1, *SHAPES[spatial_dims], generator=generator)
    inner = tuple(slice(s.start + 1, s.stop - 1) for s in REGION[spatial_dims])
    image[(0, 0, *inner)] = 1.0
    outside = tuple(slice(s - 6, s - 1) for s in SHAPES[spatial_dims])  # far corner, outside the region
    image[(0, 0, *outside)] = -1.5
    return image


@pytest.fixture
def a_cubic_model() -> CubicModel:
    return CubicModel()


@pytest.fixture
def a_region(spatial_dims: int) -> tuple[slice, ...]:
    """The box (slices along the spatial axes) whose mean intensity ``a_region_model`` returns."""
    return REGION[spatial_dims]


@pytest.fixture
def a_two_logit_cnn(spatial_dims: int) -> SmallCNN:
    torch.manual_seed(5)
    return SmallCNN(spatial_dims, n_logits=2).eval()
