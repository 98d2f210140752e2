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
