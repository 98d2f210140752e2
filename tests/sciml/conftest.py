"""Run the sciml tests on one thread: their tensors are tiny, and on a shared CPU several threads
spin against each other (measured: a 64 x 150 DMD took 40 times longer with two threads)."""

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)
