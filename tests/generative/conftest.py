"""Run the generative tests on one thread: their tensors are tiny, and on a shared CPU
several threads spin against each other (a 4 x 4 autoencoder's 30 epochs took minutes
with two threads on a loaded machine, a second with one)."""

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
