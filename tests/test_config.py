import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlbook import config


def test_profile_defaults_to_quick(monkeypatch):
    monkeypatch.delenv("DLBOOK_PROFILE", raising=False)
    assert config.profile() == "quick"


@pytest.mark.parametrize("value", ["quick", "full"])
def test_profile_reads_environment(monkeypatch, value):
    monkeypatch.setenv("DLBOOK_PROFILE", value)
    assert config.profile() == value


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("DLBOOK_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"'fast'.*quick, full"):
        config.profile()


def test_settings_pick_the_active_profile(monkeypatch):
    monkeypatch.setenv("DLBOOK_PROFILE", "full")
    cfg = config.settings(quick=dict(epochs=3, n=10), full=dict(epochs=30, n=None))
    assert cfg.profile == "full" and cfg.epochs == 30 and cfg["n"] is None
    assert dict(cfg) == {"epochs": 30, "n": None}
    assert "full" in repr(cfg) and "epochs=30" in repr(cfg)
    assert "| `epochs` | `30` |" in cfg._repr_markdown_()


def test_settings_must_name_the_same_keys():
    with pytest.raises(ValueError, match=r"only in quick: \['n'\]"):
        config.settings(quick=dict(epochs=3, n=1), full=dict(epochs=30))


def test_settings_unknown_attribute_is_a_clear_error():
    cfg = config.settings(quick=dict(epochs=3), full=dict(epochs=30), profile="quick")
    with pytest.raises(AttributeError, match="defines: epochs"):
        cfg.lr


def test_device_override(monkeypatch):
    monkeypatch.setenv("DLBOOK_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")
    assert config.device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="not a device name"):
        config.device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_requested_without_gpu_is_an_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        config.device("cuda")


def _draws():
    import random

    return random.random(), np.random.rand(), torch.randn(3), torch.nn.Linear(4, 2).weight.detach().clone()


def test_seed_everything_repeats_every_generator():
    config.seed_everything(123)
    a = _draws()
    config.seed_everything(123)
    b = _draws()
    assert a[0] == b[0] and a[1] == b[1]
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    config.seed_everything(124)
    assert not torch.equal(_draws()[2], a[2])


def test_seeded_training_is_deterministic_on_cpu():
    def run():
        config.seed_everything(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        x, y = torch.randn(64, 8), torch.randn(64, 1)
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(), run())


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        config.seed_everything(seed)


def test_seed_everything_seeds_tensorflow_when_asked():
    tf = pytest.importorskip("tensorflow")
    config.seed_everything(7, tensorflow=True)
    a = tf.random.uniform((3,)).numpy()
    config.seed_everything(7, tensorflow=True)
    b = tf.random.uniform((3,)).numpy()
    np.testing.assert_array_equal(a, b)


def test_interactive_is_false_in_the_book_build(monkeypatch):
    monkeypatch.setenv("DLBOOK_BUILD", "1")
    assert config.interactive() is False


def test_describe_names_profile_and_device(monkeypatch):
    monkeypatch.setenv("DLBOOK_PROFILE", "quick")
    info = config.describe()
    assert info["profile"] == "quick" and info["device"].startswith(("cpu", "cuda"))


def test_jobs_reads_dlbook_jobs_and_defaults_to_cores_and_memory(monkeypatch):
    monkeypatch.setenv("DLBOOK_JOBS", "3")
    assert config.jobs() == 3
    monkeypatch.delenv("DLBOOK_JOBS")
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert config.jobs() == max(1, min(config.cores(), memory // config.JOB_MEMORY))


@pytest.mark.parametrize("name", ["DLBOOK_JOBS", "DLBOOK_THREADS"])
@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_jobs_and_threads_reject_anything_but_a_positive_integer(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer, got '{re.escape(value)}'"):
        config.threads(config.jobs())


def test_threads_share_the_cores_between_jobs(monkeypatch):
    monkeypatch.delenv("DLBOOK_THREADS", raising=False)
    assert config.threads(1) == config.cores()
    assert config.threads(config.cores() * 4) == 1
    monkeypatch.setenv("DLBOOK_THREADS", "3")
    assert config.threads(1) == 3
    with pytest.raises(ValueError, match="n_jobs must be an integer >= 1, got 0"):
        monkeypatch.delenv("DLBOOK_THREADS")
        config.threads(0)


def test_thread_environment_names_every_library():
    env = config.thread_environment(2)
    assert env == {"DLBOOK_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
                   "OPENBLAS_NUM_THREADS": "2", "TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"}
    with pytest.raises(TypeError, match="n_threads must be an integer"):
        config.thread_environment(1.0)


def test_importing_config_applies_dlbook_threads():
    """In a fresh process: torch, the environment for BLAS/OpenMP/TensorFlow, and the BLAS loaded."""
    code = (
        "import os, torch, threadpoolctl\n"
        "from dlbook import config\n"
        "blas = {i['internal_api']: i['num_threads'] for i in threadpoolctl.threadpool_info()}\n"
        "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['TF_NUM_INTRAOP_THREADS'], sorted(set(blas.values())))\n"
    )
    env = {**os.environ, "DLBOOK_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1", "[1]"]


def test_describe_names_jobs_and_threads(monkeypatch):
    monkeypatch.setenv("DLBOOK_JOBS", "2")
    monkeypatch.setenv("DLBOOK_THREADS", "1")
    info = config.describe()
    assert info["chapters at once (DLBOOK_JOBS)"] == "2" and info["threads per kernel (DLBOOK_THREADS)"] == "1"


SEED_WITHOUT_INDUCTOR = """
import sys, torch
from dlbook.config import seed_everything
seed_everything(0)
assert torch.are_deterministic_algorithms_enabled()
assert torch.is_deterministic_algorithms_warn_only_enabled()
assert "torch._inductor" not in sys.modules  # 3-4 s of CPU not spent
import torch._inductor.config as inductor
assert inductor.deterministic  # torch.compile sees the same switch
seed_everything(0, deterministic=False)
assert not torch.are_deterministic_algorithms_enabled()
assert not inductor.deterministic
print("ok")
"""


def test_seed_everything_sets_torchs_switches_without_importing_inductor():
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(config.__file__).parents[1])}
    env.pop("TORCHINDUCTOR_DETERMINISTIC", None)
    done = subprocess.run(
        [sys.executable, "-c", SEED_WITHOUT_INDUCTOR], capture_output=True,
        text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
