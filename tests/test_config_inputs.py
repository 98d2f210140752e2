"""Settings from the environment, checked alike (reliability probe, issue 13: defect 18)."""

import random

import numpy as np
import pytest
import torch

from dlbook import config


def test_device_variable_is_stripped(monkeypatch):
    """Probe: DLBOOK_DEVICE='  cpu ' was refused although DLBOOK_PROFILE is stripped."""
    monkeypatch.setenv("DLBOOK_DEVICE", "  cpu \n")
    assert config.device() == torch.device("cpu")
    monkeypatch.setenv("DLBOOK_DEVICE", "   ")
    assert config.device().type in ("cpu", "cuda")  # blank: the default choice


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks a machine without MPS")
def test_mps_is_checked_against_the_machine(monkeypatch):
    """Probe: DLBOOK_DEVICE=mps was accepted on Linux and failed later inside torch."""
    monkeypatch.setenv("DLBOOK_DEVICE", "mps")
    with pytest.raises(RuntimeError, match=r"DLBOOK_DEVICE='mps' was requested but MPS .* is not available"):
        config.device()
    with pytest.raises(RuntimeError, match="not available"):
        config.describe()


@pytest.mark.skipif(torch.xpu.is_available(), reason="checks a machine without XPU")
def test_xpu_is_checked_against_the_machine():
    with pytest.raises(RuntimeError, match="device='xpu' was requested but XPU"):
        config.device("xpu")


def test_meta_and_unknown_devices_are_refused(monkeypatch):
    monkeypatch.setenv("DLBOOK_DEVICE", "meta")
    with pytest.raises(ValueError, match="DLBOOK_DEVICE='meta' is not a device to compute on"):
        config.device()
    with pytest.raises(ValueError, match="device='gpu0' is not a device name"):
        config.device("gpu0")
    with pytest.raises(TypeError, match="device must be a device name"):
        config.device(0)


def test_an_absent_cuda_device_is_refused():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(RuntimeError, match=f"device='cuda:{count}' was requested but"):
        config.device(f"cuda:{count}")


def test_a_seed_too_large_for_torch_fails_before_anything_is_seeded():
    """Probe: seed_everything(2**64) failed inside torch after Python and NumPy were seeded."""
    random.seed(123)
    np.random.seed(123)
    before = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(123)
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer below 2\*\*64"):
        config.seed_everything(2**64)
    assert (random.random(), np.random.random()) == before
    config.seed_everything(2**64 - 1)  # the largest torch accepts
