"""CheckpointManager, crash safety, safe loading and bit-identical resumption across processes."""

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from dlbook.practice.checkpointing import (
    CheckpointManager, RunConfig, build_run, crash_during_save, naive_save, train_run,
)
from dlbook.train import atomic_save, fit, load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _data(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 1, 6, 6, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    x = centres[y] + 0.8 * torch.randn(n, 1, 6, 6, generator=g)
    return {"x_train": x[: n - 200], "y_train": y[: n - 200], "x_val": x[n - 200:], "y_val": y[n - 200:]}


def _epoch_of(path):
    return torch.load(path, weights_only=True)["epoch"]


def test_manager_keeps_the_last_k_and_the_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    model = nn.Linear(2, 2)
    losses = [1.0, 0.6, 0.8, 0.5, 0.7, 0.9]
    for epoch, _ in enumerate(losses, start=1):
        manager.save(model=model, epoch=epoch, history={"val_loss": losses[:epoch]})
        kept = [p.name for p in manager.checkpoints()]
        assert kept == [f"epoch-{e:04d}.pt" for e in range(max(1, epoch - 1), epoch + 1)]
        best_epoch = min(range(epoch), key=lambda i: losses[i]) + 1
        assert _epoch_of(manager.best()) == best_epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "epoch-0005.pt", "epoch-0006.pt"]
    assert manager.latest().name == "epoch-0006.pt"


def test_manager_mode_max_and_no_monitor(tmp_path):
    manager = CheckpointManager(tmp_path / "a", keep_last=1, monitor="val_acc", mode="max")
    for epoch, accs in enumerate([[0.5], [0.5, 0.7], [0.5, 0.7, 0.7]], start=1):
        manager.save(model=nn.Linear(1, 1), epoch=epoch, history={"val_acc": accs})
    assert _epoch_of(manager.best()) == 2  # a tie is not an improvement
    plain = CheckpointManager(tmp_path / "b", monitor=None)
    plain.save(model=nn.Linear(1, 1), epoch=1)
    assert plain.best() is None and plain.latest().name == "epoch-0001.pt"


def test_manager_errors(tmp_path):
    with pytest.raises(ValueError, match="keep_last must be a positive integer, got 0"):
        CheckpointManager(tmp_path, keep_last=0)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        CheckpointManager(tmp_path, mode="best")
    manager = CheckpointManager(tmp_path)
    with pytest.raises(KeyError, match="monitor 'val_loss' is not in the history"):
        manager.save(model=nn.Linear(1, 1), epoch=1, history={"train_loss": [1.0]})
    with pytest.raises(FileNotFoundError, match="no latest checkpoint"):
        manager.load(model=nn.Linear(1, 1))


def test_fit_with_a_manager_resumes_bit_identically(tmp_path):
    data, cfg = _data(), RunConfig(epochs=4, hidden=16, batch_size=32)
    model, opt, sched, train, val = build_run(data, cfg)
    straight = fit(model, train, opt, epochs=4, val_loader=val, scheduler=sched, progress=False)
    reference = [p.detach().clone() for p in model.parameters()]

    model, opt, sched, train, val = build_run(data, cfg)
    fit(model, train, opt, epochs=2, val_loader=val, scheduler=sched, progress=False,
        checkpoint=CheckpointManager(tmp_path, keep_last=1))
    torch.manual_seed(99)
    torch.rand(100)  # a "new process": different global random state
    model, opt, sched, train, val = build_run(data, RunConfig(**{**cfg.__dict__, "seed": 7}))
    resumed = fit(model, train, opt, epochs=4, val_loader=val, scheduler=sched, progress=False,
                  checkpoint=CheckpointManager(tmp_path, keep_last=1))
    assert all(torch.equal(a, b) for a, b in zip(reference, model.parameters(), strict=True))
    assert resumed.metrics == straight.metrics
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("epoch")] == ["epoch-0004.pt"]


def test_a_killed_process_resumes_to_bit_identical_weights(tmp_path):
    """The run is killed (SIGKILL) by the test once its first checkpoint exists, then resumed here."""
    data = _data(n=3000)
    torch.save(data, tmp_path / "data.pt")
    cfg = RunConfig(epochs=4, hidden=32, batch_size=16)
    reference, straight = train_run(tmp_path / "data.pt", tmp_path / "straight", cfg)

    run_dir = tmp_path / "interrupted"
    args = [str(tmp_path / "data.pt"), str(run_dir), "--epochs", "4", "--hidden", "32", "--batch-size", "16"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-m", "dlbook.practice.checkpointing", *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run_dir / "epoch-0001.pt").exists():
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "the child never wrote a checkpoint"
        time.sleep(0.01)
    child.kill()
    child.wait()
    done = CheckpointManager(run_dir).latest()
    assert done is not None and _epoch_of(done) < 4, "the kill came too late to interrupt the run"

    resumed, history = train_run(tmp_path / "data.pt", run_dir, cfg)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert history.metrics == straight.metrics
    assert history["val_acc"][-1] > 0.6  # four classes: chance is 0.25


def test_crash_mid_save_corrupts_a_naive_save_and_not_an_atomic_one(tmp_path):
    old, new = {"w": torch.zeros(50_000)}, {"w": torch.ones(50_000)}
    naive, atomic = tmp_path / "naive.pt", tmp_path / "atomic.pt"
    for path in (naive, atomic):
        torch.save(old, path)
    written = crash_during_save(naive_save, new, naive)
    assert 0 < written == naive.stat().st_size
    with pytest.raises(RuntimeError):  # a half-written zip archive
        torch.load(naive, weights_only=True)
    crash_during_save(atomic_save, new, atomic)
    assert torch.equal(torch.load(atomic, weights_only=True)["w"], old["w"])
    leftovers = [p.name for p in tmp_path.glob(".atomic.pt.*.tmp")]
    assert len(leftovers) == 1  # SIGKILL left the temporary file: the manager cleans such files up
    assert CheckpointManager(tmp_path, monitor=None).removed_temporaries == leftovers
    assert not list(tmp_path.glob(".*.tmp"))


def test_crash_while_the_manager_saves_loses_nothing(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=1)
    model = nn.Linear(3, 3)
    manager.save(model=model, epoch=1, history={"val_loss": [1.0]})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    crash_during_save(lambda obj, path: manager.save(model=model, epoch=2, history={"val_loss": [1.0, 0.5]}),
                      None, tmp_path / "unused")
    survivor = CheckpointManager(tmp_path, keep_last=1)
    assert survivor.latest().name == "epoch-0001.pt" and _epoch_of(survivor.best()) == 1
    fresh = nn.Linear(3, 3)
    survivor.load("latest", model=fresh, restore_rng=False)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())


def test_crash_during_save_errors(tmp_path):
    with pytest.raises(ValueError, match="fraction must be strictly between 0 and 1"):
        crash_during_save(naive_save, {}, tmp_path / "x.pt", fraction=1.0)
    with pytest.raises(RuntimeError, match="never started writing"):
        crash_during_save(lambda obj, path: None, {}, tmp_path / "x.pt", timeout=20)


class _Payload:
    """Unpickling this runs Python code: it writes a marker file here, but it could do anything."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran while unpickling')",))


def test_weights_only_refuses_a_malicious_checkpoint(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"model": nn.Linear(2, 2).state_dict(), "extra": _Payload(marker)}, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == ["builtins.exec"]
    with pytest.raises(pickle.UnpicklingError, match="exec"):
        torch.load(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path, model=nn.Linear(2, 2))
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what an unsafe load does
    assert marker.read_text() == "code ran while unpickling"
