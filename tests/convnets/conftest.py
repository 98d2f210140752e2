"""Run the convnets tests on one thread (the shared ``one_thread`` fixture of
tests/conftest.py): their tensors are tiny, and on a shared CPU several threads
spin against each other."""

import pytest


@pytest.fixture(autouse=True)
def _convnets_on_one_thread(one_thread):
    yield
