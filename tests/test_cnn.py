"""A convolutional network with every layer kind, trained in all three backends.

The layer kinds are each checked alone (tests/test_layer_*.py); here they train
together: Conv2d, BatchNorm, MaxPool2d, LayerNorm, AvgPool2d, Flatten, Dropout,
Dense, RMSNorm and activations, on image batches with shuffling and a partial last
batch, and ``compare`` must find parity in float64 and float32.

A trap the parity harness explains: a bias right before BatchNorm has an
exactly zero gradient (BatchNorm subtracts each channel's batch mean, bias
included), so what each backend computes for it is rounding noise, different
in each (about 1e-17). Adam's step for it is about lr * g / eps (1e-11 per step
here, measured), so the bias drifts away from 0 by a different amount in each
backend; near 0 only the absolute tolerance (1e-12) applies, and after 30 steps
the bias is 2.5e-10 apart in torch and 8e-11 in JAX (the running mean follows).
Every teacher-forced step agrees within its rounding allowance: the diagnosis is
"amplification", not an implementation difference. torch users write
``bias=False`` before BatchNorm for the same reason.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require

from nnparity.shared import (Activation, Adam, AvgPool2d, BatchNorm, Conv2d, Dataset, Dense,
                             Dropout, Flatten, LayerNorm, MaxPool2d, NetworkSpec, RMSNorm,
                             compare)


def cnn(dtype: str = "float64", bias_before_batch_norm: bool = False) -> NetworkSpec:
    return NetworkSpec(
        input_shape=(1, 8, 8),
        layers=(Conv2d(4, 3, padding=1, bias=bias_before_batch_norm), BatchNorm(),  # (4, 8, 8)
                Activation("tanh"), MaxPool2d(2),                                     # (4, 4, 4)
                Conv2d(6, 3, padding="same"), LayerNorm(dims=3), Activation("gelu"),  # (6, 4, 4)
                AvgPool2d(2), Flatten(), Dropout(0.2),                                # (24,)
                Dense(8), RMSNorm(), Activation("silu"), Dense(4)),                   # (4,)
        loss="cross_entropy", optimizer=Adam(lr=0.01), batch_size=5, epochs=6, shuffle=True,
        init="torch_default", dtype=dtype)


def images() -> Dataset:
    """22 training images (4 full batches of 5 and a partial one of 2), 4 classes."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((22, 1, 8, 8))
    y = rng.integers(0, 4, 22)
    return Dataset(x, y, x[:6], y[:6])


@pytest.mark.parametrize("dtype", [
    "float64", pytest.param("float32", marks=pytest.mark.slow)])
def test_a_cnn_with_every_layer_kind_has_parity(dtype):
    for backend in ("torch", "jax"):
        require(backend)
    report = compare(cnn(dtype), images())
    assert report.ok, str(report)
    for parity in report.parity:
        assert parity.diagnosis.startswith("ok"), parity.diagnosis


@pytest.mark.slow
def test_a_bias_before_batch_norm_is_rounding_noise_that_adam_amplifies():
    """The negative control of the test above, and the trap it avoids."""
    for backend in ("torch", "jax"):
        require(backend)
    report = compare(cnn(bias_before_batch_norm=True), images())
    assert not report.ok
    for parity in report.parity:
        assert parity.diagnosis.startswith("amplification"), parity.diagnosis
        assert parity.teacher and all(step.ok for step in parity.teacher)
