"""The resumable run refuses other settings, and its inputs are checked (reliability probe, issue 13:
defects 2 and 5)."""

import pytest
import torch

from dlbook.practice.checkpointing import CheckpointManager, RunConfig, build_run, main, train_run
from dlbook.train import CheckpointError


def _data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 4, 4, generator=g) + y[:, None, None, None]
    return {"x_train": x[:80], "y_train": y[:80], "x_val": x[80:], "y_val": y[80:]}


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(epochs=-1), ValueError, "epochs must be an integer >= 1"),
    (dict(lr=float("nan")), ValueError, "lr must be a finite number >= 0"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(hidden=2.5), TypeError, "hidden must be an integer"),
])
def test_run_config_is_validated(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RunConfig(**kwargs)


def test_build_run_checks_the_data():
    data = _data()
    with pytest.raises(TypeError, match="y_train must hold integer class labels, got dtype torch.float32"):
        build_run({**data, "y_train": data["y_train"].float()}, RunConfig())
    with pytest.raises(ValueError, match="y_val must hold labels in"):
        build_run({**data, "y_val": data["y_val"] - 1}, RunConfig())
    with pytest.raises(ValueError, match="x_train and y_train must have the same length"):
        build_run({**data, "y_train": data["y_train"][:10]}, RunConfig())
    with pytest.raises(ValueError, match="x_val must not be empty"):
        build_run({**data, "x_val": data["x_val"][:0], "y_val": data["y_val"][:0]}, RunConfig())


def test_extending_a_finished_run_is_refused_unless_asked(tmp_path):
    """Probe defect 2: --epochs 8 on a finished 4-epoch run kept the old cosine (T_max=4): the rate went
    back up to 8.5e-4 instead of down to 3.8e-5."""
    torch.save(_data(), tmp_path / "data.pt")
    cfg = RunConfig(epochs=2, hidden=8, batch_size=40)
    train_run(tmp_path / "data.pt", tmp_path / "run", cfg)
    longer = RunConfig(epochs=4, hidden=8, batch_size=40)
    with pytest.raises(CheckpointError, match=r"other settings: scheduler_settings.T_max: saved 2, now 4.*"
                                              r"settings.epochs: saved 2, now 4"):
        train_run(tmp_path / "data.pt", tmp_path / "run", longer)
    with pytest.raises(CheckpointError, match="settings.seed: saved 0, now 1"):
        train_run(tmp_path / "data.pt", tmp_path / "run", RunConfig(epochs=2, hidden=8, batch_size=40, seed=1))
    train_run(tmp_path / "data.pt", tmp_path / "run", RunConfig(epochs=2, hidden=8, batch_size=40, keep_last=5))
    with pytest.warns(UserWarning, match="despite changed settings"):
        _, history = train_run(tmp_path / "data.pt", tmp_path / "run", longer, allow_changed_settings=True)
    assert len(history) == 4


def test_the_script_reports_bad_settings_without_a_traceback(tmp_path, capsys):
    torch.save(_data(), tmp_path / "data.pt")
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "data.pt"), str(tmp_path / "run"), "--epochs", "-2"])
    assert exit_.value.code == 2 and "epochs must be an integer >= 1" in capsys.readouterr().err


def test_manager_load_latest_skips_a_corrupt_file(tmp_path):
    torch.save(_data(), tmp_path / "data.pt")
    train_run(tmp_path / "data.pt", tmp_path / "run", RunConfig(epochs=2, hidden=8, batch_size=40))
    manager = CheckpointManager(tmp_path / "run")
    (tmp_path / "run" / "epoch-0002.pt").write_bytes(b"garbage")
    model = build_run(_data(), RunConfig(epochs=2, hidden=8, batch_size=40))[0]
    with pytest.warns(UserWarning, match="resuming from .*epoch-0001.pt because the newer epoch-0002.pt"):
        state = manager.load("latest", model=model)
    assert state["epoch"] == 1
