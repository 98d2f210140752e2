"""What fit, evaluate, accuracy and the checkpoint functions refuse; checkpoint integrity and
settings (reliability probe, issue 13: defects 2, 5, 7 and 16)."""

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook.config import seed_everything
from dlbook.practice.checkpointing import CheckpointManager
from dlbook.train import CheckpointError, accuracy, evaluate, fit, load_checkpoint, save_checkpoint


def _setup(seed=0, epochs=4, cosine=True, hidden=8):
    seed_everything(seed)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs) if cosine
             else torch.optim.lr_scheduler.StepLR(opt, step_size=1))
    return model, loader, opt, sched


# --- learning on nothing (defect 7) and bad batches ------------------------------------------------


def test_fit_on_an_empty_loader_is_an_error():
    """Probe: fit "trained" on an empty loader and returned a history holding only lr."""
    m = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="train_loader yielded no examples"):
        fit(m, [], torch.optim.SGD(m.parameters(), lr=0.1), epochs=2, progress=False)
    loader = DataLoader(TensorDataset(torch.randn(5, 3), torch.zeros(5, dtype=torch.long)), batch_size=8,
                        drop_last=True)
    with pytest.raises(ValueError, match="drop_last=True"):
        fit(m, loader, torch.optim.SGD(m.parameters(), lr=0.1), epochs=1, progress=False)


def test_fit_refuses_a_model_without_parameters_and_a_foreign_optimizer():
    other = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="has no parameters to train"):  # was a bare StopIteration
        fit(nn.ReLU(), [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))],
            torch.optim.SGD(other.parameters(), lr=0.1), epochs=1, progress=False)
    with pytest.raises(ValueError, match="updates none of the model's parameters"):
        fit(nn.Linear(3, 2), [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))],
            torch.optim.SGD(other.parameters(), lr=0.1), epochs=1, progress=False)


def test_fit_refuses_bool_epochs_dict_batches_and_float_class_targets():
    m = nn.Linear(3, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs must be a positive integer, got True"):
        fit(m, [], opt, epochs=True)
    with pytest.raises(TypeError, match=r"train_loader must yield \(x, y\) pairs, got a dict"):
        fit(m, [{"x": torch.randn(2, 3), "y": torch.zeros(2)}], opt, epochs=1, progress=False)
    with pytest.raises(TypeError, match="targets of cross_entropy must be integer classes"):
        fit(m, [(torch.randn(2, 3), torch.zeros(2))], opt, epochs=1, progress=False)


def test_accuracy_refuses_a_broadcast_target():
    """Probe: accuracy((4, 3), (1,)) broadcast the target and returned 0.25."""
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        accuracy(torch.randn(4, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        accuracy(torch.randn(4, 3), torch.zeros(2, dtype=torch.long))
    assert accuracy(torch.eye(3), torch.arange(3)) == 1.0
    assert accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).isnan()  # as torch's mean of nothing


def test_evaluate_model_without_parameters_uses_the_cpu():
    out = evaluate(nn.Flatten(), [(torch.eye(3), torch.arange(3))], loss_fn=None)
    assert out == {"acc": 1.0}


# --- integrity (defect 5) ------------------------------------------------------------------------


def _run(tmp_path, epochs=3, **kw):
    model, loader, opt, sched = _setup(epochs=epochs, **kw)
    manager = CheckpointManager(tmp_path, keep_last=3, monitor=None)
    fit(model, loader, opt, epochs=epochs, scheduler=sched, checkpoint=manager, progress=False)
    return model, manager


def _flip_a_weight_bit(path):
    """Flip one bit inside the data of the model's first weight, where torch.load cannot see it."""
    data = bytearray(path.read_bytes())
    weight = torch.load(path, weights_only=True)["model"]["0.weight"]
    needle = weight.numpy().tobytes()[:16]
    at = bytes(data).index(needle)
    data[at + 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_a_checkpoint_is_detected(tmp_path):
    """Probe: one flipped bit in the tensor data loaded fine, and training resumed with it."""
    model, manager = _run(tmp_path)
    path = manager.latest()
    _flip_a_weight_bit(path)
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["0.weight"], model[0].weight)  # torch: fine
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is corrupt.*SHA-256"):
        load_checkpoint(path, model=_setup()[0])


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    _run(tmp_path, epochs=3)
    newest = tmp_path / "epoch-0003.pt"
    if damage == "flip":
        _flip_a_weight_bit(newest)
    else:
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2] if damage == "truncate" else b"")
    model, loader, opt, sched = _setup(epochs=3)
    manager = CheckpointManager(tmp_path, keep_last=3, monitor=None)
    with pytest.warns(UserWarning, match=r"resuming from .*epoch-0002.pt because the newer epoch-0003.pt"):
        history = fit(model, loader, opt, epochs=3, scheduler=sched, checkpoint=manager, progress=False)
    assert len(history) == 3  # epoch 3 trained again, from epoch 2
    assert torch.load(newest, weights_only=True)["epoch"] == 3  # and written again, whole


def test_truncated_and_empty_files_name_the_path(tmp_path):
    model = _setup()[0]
    path = tmp_path / "a.pt"
    save_checkpoint(path, model=model)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is corrupt or truncated"):
        load_checkpoint(path, model=model)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is corrupt or truncated"):  # was a bare EOFError
        load_checkpoint(path, model=model)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_checkpoint(tmp_path, model=model)


def test_no_usable_checkpoint_is_an_error_naming_every_file(tmp_path):
    _run(tmp_path, epochs=2)
    for p in tmp_path.glob("epoch-*.pt"):
        p.write_bytes(b"")
    model, loader, opt, sched = _setup(epochs=2)
    with pytest.raises(CheckpointError, match="no usable checkpoint.*epoch-0002.pt.*epoch-0001.pt"):
        fit(model, loader, opt, epochs=2, scheduler=sched, checkpoint=CheckpointManager(tmp_path, monitor=None),
            progress=False)


# --- what a checkpoint is loaded into (defect 16) -------------------------------------------------


def test_another_optimizer_is_refused_before_anything_is_overwritten(tmp_path):
    """Probe: an Adam checkpoint loaded into SGD replaced its param groups; step() then failed."""
    model, _, opt, _ = _setup()
    save_checkpoint(tmp_path / "adam.pt", model=model, optimizer=opt)
    fresh = _setup(seed=1)[0]
    before = [p.detach().clone() for p in fresh.parameters()]
    sgd = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match="different optimizer \\(Adam\\) than this SGD"):
        load_checkpoint(tmp_path / "adam.pt", model=fresh, optimizer=sgd)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.parameters()))
    assert "momentum" in sgd.param_groups[0]


def test_a_missing_scheduler_state_is_refused_before_the_weights_change(tmp_path):
    model = _setup()[0]
    save_checkpoint(tmp_path / "m.pt", model=model)
    fresh, _, opt, sched = _setup(seed=1)
    before = [p.detach().clone() for p in fresh.parameters()]
    with pytest.raises(ValueError, match="holds no scheduler state"):
        load_checkpoint(tmp_path / "m.pt", model=fresh, scheduler=sched)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.parameters()))


def test_another_architecture_is_refused_by_name(tmp_path):
    save_checkpoint(tmp_path / "m.pt", model=_setup(hidden=8)[0])
    with pytest.raises(CheckpointError, match=r"different architecture.*0.weight: saved \(8, 3\), model \(4, 3\)"):
        load_checkpoint(tmp_path / "m.pt", model=_setup(hidden=4)[0])


def test_a_plain_state_dict_and_a_dict_without_rng_get_clear_messages(tmp_path):
    """Probe: KeyError: 'model' and KeyError: 'rng'."""
    model = _setup()[0]
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match=r"plain state dict \(0.weight, 0.bias, 2.weight, ...\).*load_state_dict"):
        load_checkpoint(tmp_path / "sd.pt", model=model)
    torch.save({"model": model.state_dict()}, tmp_path / "norng.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no checksum: written by hand
        with pytest.raises(CheckpointError, match="no random-number generator state; pass restore_rng=False"):
            load_checkpoint(tmp_path / "norng.pt", model=model)
        load_checkpoint(tmp_path / "norng.pt", model=model, restore_rng=False)


def test_save_checkpoint_needs_a_model(tmp_path):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got NoneType"):
        save_checkpoint(tmp_path / "x.pt", model=None)


# --- settings (defect 2) -------------------------------------------------------------------------


def test_resume_with_another_schedule_is_refused(tmp_path):
    """Probe: a 4-epoch cosine run resumed with epochs=8 silently kept T_max=4 (lr back up to 8.5e-4)."""
    _run(tmp_path, epochs=2)
    model, loader, opt, sched = _setup(epochs=4)  # T_max=4: another schedule
    with pytest.raises(CheckpointError, match=r"other settings: scheduler_settings.T_max: saved 2, now 4"):
        fit(model, loader, opt, epochs=4, scheduler=sched, checkpoint=CheckpointManager(tmp_path, monitor=None),
            progress=False)
    assert [p.name for p in sorted(tmp_path.glob("epoch-*.pt"))] == ["epoch-0001.pt", "epoch-0002.pt"]


def test_resume_with_another_optimizer_setting_or_user_setting_is_refused(tmp_path):
    model, loader, opt, sched = _setup(cosine=False)
    fit(model, loader, opt, epochs=1, scheduler=sched, checkpoint=tmp_path / "r.pt", progress=False,
        settings={"batch_size": 16})
    model, loader, _, _ = _setup(cosine=False)
    opt = torch.optim.Adam(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    with pytest.raises(CheckpointError, match="optimizer_defaults.lr: saved 0.01, now 0.5"):
        fit(model, loader, opt, epochs=2, scheduler=sched, checkpoint=tmp_path / "r.pt", progress=False,
            settings={"batch_size": 16})
    model, loader, opt, sched = _setup(cosine=False)
    with pytest.raises(CheckpointError, match="settings.batch_size: saved 16, now 32"):
        fit(model, loader, opt, epochs=2, scheduler=sched, checkpoint=tmp_path / "r.pt", progress=False,
            settings={"batch_size": 32})


def test_extending_a_run_with_the_same_settings_resumes_and_an_override_is_explicit(tmp_path):
    model, loader, opt, sched = _setup(cosine=False)
    fit(model, loader, opt, epochs=1, scheduler=sched, checkpoint=tmp_path / "r.pt", progress=False)
    model, loader, opt, sched = _setup(cosine=False)
    assert len(fit(model, loader, opt, epochs=2, scheduler=sched, checkpoint=tmp_path / "r.pt",
                   progress=False)) == 2  # "a resumed run continues up to this number"
    model, loader, opt, sched = _setup(cosine=False)
    with pytest.raises(CheckpointError, match="the checkpoint is at epoch 2, past epochs=1"):
        fit(model, loader, opt, epochs=1, scheduler=sched, checkpoint=tmp_path / "r.pt", progress=False)
    model, loader, opt, _ = _setup(cosine=False)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="despite changed settings: scheduler_settings.step_size: saved 1, now 2"):
        history = fit(model, loader, opt, epochs=3, scheduler=sched, checkpoint=tmp_path / "r.pt",
                      progress=False, allow_changed_settings=True)
    assert len(history) == 3 and sched.step_size == 1  # the saved states won
