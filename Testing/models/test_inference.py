"""Inference precision and the shared sliding window: what runs in which dtype, and that the results hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from PELabelUpLib.analysis.device import describe_device
from PELabelUpLib.models.inference import (
    autocast_dtype,
    check_precision,
    cpu_has_native_bf16,
    precision_record,
    sliding_window_probability,
)


def small_unet() -> nn.Module:
    """A random two-level 3-D network (convolutions, batch norm in eval mode, a skip): real arithmetic."""
    torch.manual_seed(3)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.Sequential(nn.Conv3d(2, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
                                      nn.Conv3d(8, 8, 3, stride=2, padding=1), nn.ReLU())
            self.up = nn.ConvTranspose3d(8, 8, 2, stride=2)
            self.head = nn.Conv3d(10, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([self.up(self.down(x)), x], dim=1))

    return Net().eval()


def an_image(shape: tuple[int, int, int] = (20, 28, 24)) -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.random((2, *shape), dtype=np.float32)


def test_precision_choices_are_checked() -> None:
    assert check_precision("auto") == "auto" and check_precision("float32") == "float32"
    with pytest.raises(ValueError, match="unknown precision 'half'; choose one of: auto, float32"):
        check_precision("half")
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype("cpu", "fp16")


def test_which_network_runs_in_which_dtype() -> None:
    assert autocast_dtype("cuda", "auto") is torch.float16
    assert autocast_dtype("cuda", "auto", cpu=False) is torch.float16, "on CUDA the classifier is mixed too"
    assert autocast_dtype("cuda", "float32") is None and autocast_dtype("cpu", "float32") is None
    assert autocast_dtype("cpu", "auto", cpu=False) is None, "the classifier stays float32 on a CPU"
    native = cpu_has_native_bf16()
    assert autocast_dtype("cpu", "auto") is (torch.bfloat16 if native else None)
    assert precision_record("cpu", "float32") == {"setting": "float32", "networks_3d": "float32",
                                                  "classifier": "float32"}
    assert precision_record("cuda:0", "auto") == {"setting": "auto", "networks_3d": "float16",
                                                  "classifier": "float16"}
    described = describe_device(torch.device("cpu"), "auto")
    assert described["mixed_precision"] is native
    assert described["precision"]["networks_3d"] == ("bfloat16" if native else "float32")
    assert describe_device(torch.device("cpu"), "float32")["mixed_precision"] is False


@pytest.mark.parametrize("shape", [(20, 28, 24), (6, 9, 7)], ids=["several windows", "smaller than a window"])
def test_float32_sliding_window_matches_one_forward_pass(shape: tuple[int, int, int]) -> None:
    """A 1x1x1 network sees no window border, so the blended windows equal one pass over the whole image."""
    torch.manual_seed(0)
    network = nn.Conv3d(2, 1, 1).eval()
    image = an_image(shape)
    prob = sliding_window_probability(image, network, (8, 8, 8), precision="float32")
    with torch.no_grad():
        whole = torch.sigmoid(network(torch.from_numpy(image)[None]))[0, 0].numpy()
    assert prob.shape == shape and prob.dtype == np.float32
    np.testing.assert_allclose(prob, whole, atol=1e-6)


def test_channels_last_changes_nothing_and_the_network_stays_trainable() -> None:
    network = small_unet()
    image = an_image()
    with torch.no_grad():
        reference = torch.sigmoid(network(torch.from_numpy(image)[None]))[0, 0].numpy()
    prob = sliding_window_probability(image, network, (20, 28, 24), precision="float32")  # one window
    np.testing.assert_allclose(prob, reference, atol=1e-5)
    assert network.head.weight.is_contiguous(memory_format=torch.channels_last_3d)
    network.train()
    loss = network(torch.from_numpy(image)[None]).mean()
    loss.backward()  # would raise on weights made inside inference mode
    assert network.head.weight.grad is not None


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bfloat16 (AMX or AVX512-BF16), so "
                                                      "'auto' runs float32 here")
def test_bfloat16_on_this_cpu_stays_close_to_float32() -> None:
    network = small_unet()
    image = an_image()
    full = sliding_window_probability(image, network, (16, 16, 16), precision="float32")
    mixed = sliding_window_probability(image, network, (16, 16, 16), precision="auto")
    assert not np.array_equal(full, mixed), "auto must really run in bfloat16 here"
    assert np.abs(full - mixed).max() < 0.02
    assert ((full >= 0.5) == (mixed >= 0.5)).mean() > 0.99
