"""Run the convnets tests on one thread: their tensors are tiny, and on a
shared CPU several threads spin against each other (measured: a 100-step
CoordConv fit took 30 s on two threads of a busy machine, 2 s on one)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
