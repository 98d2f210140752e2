import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook import train
from dlbook.config import seed_everything
from dlbook.train import History, accuracy, evaluate, fit, load_checkpoint, save_checkpoint


def _blobs(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) * 0.5 + torch.tensor([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])[y]
    return x, y


def _setup(seed=0, generator=False):
    seed_everything(seed)
    x, y = _blobs()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(seed) if generator else None)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, loader, opt, sched


def test_fit_learns_and_records_history():
    model, loader, opt, sched = _setup()
    hist = fit(model, loader, opt, epochs=5, val_loader=loader, scheduler=sched, progress=False)
    assert len(hist) == 5
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert hist["val_acc"][-1] > 0.9  # three separable blobs: chance is 1/3
    assert hist["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert set(hist.metrics) == {"train_loss", "train_acc", "lr", "val_loss", "val_acc"}
    assert "5 epochs" in repr(hist)


def test_evaluate_matches_a_direct_computation():
    model, loader, *_ = _setup()
    x, y = loader.dataset.tensors
    model.eval()
    with torch.no_grad():
        out = model(x)
    got = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=50))
    assert got["acc"] == pytest.approx(accuracy(out, y).item())
    assert got["loss"] == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)


def test_evaluate_restores_training_mode_and_rejects_empty():
    model, *_ = _setup()
    model.train()
    evaluate(model, [(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))])
    assert model.training
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [])


@pytest.mark.parametrize("epochs", [0, -1, 2.0])
def test_fit_rejects_bad_epochs(epochs):
    model, loader, opt, _ = _setup()
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fit(model, loader, opt, epochs=epochs)


@pytest.mark.parametrize("generator", [False, True])
def test_resumed_run_is_bit_identical(tmp_path, generator):
    """4 epochs straight == 2 epochs, a fresh process state, then resume to 4."""
    model, loader, opt, sched = _setup(generator=generator)
    straight = fit(model, loader, opt, epochs=4, scheduler=sched, progress=False)
    reference = [p.detach().clone() for p in model.parameters()]

    ckpt = tmp_path / "run.pt"
    model, loader, opt, sched = _setup(generator=generator)
    fit(model, loader, opt, epochs=2, scheduler=sched, checkpoint=ckpt, progress=False)
    # Everything is rebuilt from scratch, and the global generators are disturbed.
    model, loader, opt, sched = _setup(seed=99, generator=generator)
    torch.randn(1000)
    resumed = fit(model, loader, opt, epochs=4, scheduler=sched, checkpoint=ckpt, progress=False)
    for a, b in zip(reference, model.parameters()):
        assert torch.equal(a, b)
    assert resumed.metrics == straight.metrics


def test_atomic_save_keeps_the_old_checkpoint_when_a_save_crashes(tmp_path, monkeypatch):
    model, *_ = _setup()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model=model, epoch=1)
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(train.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model=model, epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_load_checkpoint_refuses_arbitrary_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Evil()}, path)
    model, *_ = _setup()
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path, model=model)


def test_load_checkpoint_errors(tmp_path):
    model, _, opt, _ = _setup()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt", model=model)
    save_checkpoint(tmp_path / "m.pt", model=model)
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(tmp_path / "m.pt", model=model, optimizer=opt)


def test_history_errors():
    h = History()
    h.append({"loss": 1.0})
    with pytest.raises(KeyError, match="holds: loss"):
        h["acc"]


def test_penalty_is_added_to_the_training_loss_only():
    model, loader, opt, _ = _setup()
    weights = [p for p in model.parameters() if p.ndim > 1]
    hist = fit(model, loader, opt, epochs=2, val_loader=loader, progress=False,
               penalty=lambda m: 0.5 * sum((w**2).sum() for w in weights))
    assert "train_penalty" in hist and hist["train_penalty"][0] > 0
    final = evaluate(model, loader)
    assert hist["val_loss"][-1] == pytest.approx(final["loss"])  # validation loss has no penalty in it
    # a strong L2 penalty shrinks the weights compared with no penalty
    norms = []
    for pen in (None, lambda m: 0.05 * sum((p**2).sum() for p in m.parameters() if p.ndim > 1)):
        model, loader, opt, _ = _setup()
        fit(model, loader, opt, epochs=5, penalty=pen, progress=False)
        norms.append(sum((p**2).sum().item() for p in model.parameters() if p.ndim > 1))
    assert norms[1] < 0.8 * norms[0]


def test_callbacks_run_every_epoch_and_can_stop_training():
    model, loader, opt, _ = _setup()
    seen = []
    hist = fit(model, loader, opt, epochs=10, progress=False,
               callbacks=[lambda m, h: seen.append(len(h)), lambda m, h: len(h) == 3])
    assert len(hist) == 3 and seen == [1, 2, 3]


def test_fit_accepts_a_checkpoint_manager_and_rejects_other_objects(tmp_path):
    class Manager:  # the protocol: latest() and save(**state)
        def __init__(self):
            self.saved = []

        def latest(self):
            return tmp_path / f"{len(self.saved)}.pt" if self.saved else None

        def save(self, **state):
            self.saved.append(state["epoch"])
            save_checkpoint(tmp_path / f"{len(self.saved)}.pt", **state)

    manager = Manager()
    model, loader, opt, sched = _setup()
    fit(model, loader, opt, epochs=2, scheduler=sched, checkpoint=manager, progress=False)
    fit(model, loader, opt, epochs=3, scheduler=sched, checkpoint=manager, progress=False)  # resumes at 2
    assert manager.saved == [1, 2, 3]
    with pytest.raises(TypeError, match="checkpoint must be a path or have latest"):
        fit(model, loader, opt, epochs=1, checkpoint=42, progress=False)


def test_tensor_batches_are_the_first_epoch_of_a_random_sampler_then_new_orders():
    from torch.utils.data import BatchSampler, RandomSampler

    x = torch.arange(23.0)[:, None] * torch.ones(1, 3)
    y = torch.arange(23)
    batches = train.TensorBatches(x, y, 5, generator=torch.Generator().manual_seed(4))
    sampler = RandomSampler(x, generator=torch.Generator().manual_seed(4))
    first = torch.cat([b for _, b in batches]).tolist()
    reference = [i for chunk in BatchSampler(sampler, 5, False) for i in chunk]
    assert first == reference  # the order of DataLoader(shuffle=True, generator=...)
    passes = [list(batches) for _ in range(3)]
    for batches_of_pass in passes:
        assert [len(b) for _, b in batches_of_pass] == [5, 5, 5, 5, 3] == [5] * (len(batches) - 1) + [3]
        order = torch.cat([b for _, b in batches_of_pass])
        assert sorted(order.tolist()) == list(range(23))  # every example once per pass
        for xb, yb in batches_of_pass:
            torch.testing.assert_close(xb, x[yb])  # inputs stay with their targets
    orders = [torch.cat([b for _, b in p]).tolist() for p in passes]
    assert len({str(o) for o in [first, *orders]}) == 4  # a new order on every pass
    again = train.TensorBatches(x, y, 5, generator=torch.Generator().manual_seed(4))
    assert [torch.cat([b for _, b in again]).tolist() for _ in range(4)] == [first, *orders]
    still = train.TensorBatches(x, y, 5, shuffle=False)
    assert torch.cat([b for _, b in still]).tolist() == list(range(23))


def test_tensor_batches_reject_mismatched_or_empty_input():
    x, y = torch.zeros(10, 2), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="y has 9 rows"):
        train.TensorBatches(x, y[:9], 4)
    with pytest.raises(ValueError, match="x"):
        train.TensorBatches(x[:0], y[:0], 4)
    with pytest.raises(ValueError, match="batch_size"):
        train.TensorBatches(x, y, 0)
    with pytest.raises(TypeError, match="generator"):
        train.TensorBatches(x, y, 4, generator=0)


def test_fit_resumes_a_tensor_batches_run_in_the_same_order(tmp_path):
    x, y = _blobs(n=96)

    def run(epochs, ckpt):
        seed_everything(0)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        batches = train.TensorBatches(x, y, 16, generator=torch.Generator().manual_seed(1))
        fit(model, batches, opt, epochs=epochs, checkpoint=ckpt, progress=False)
        return model

    whole = run(4, None)
    run(2, tmp_path / "c.pt")  # interrupted after two epochs ...
    resumed = run(4, tmp_path / "c.pt")  # ... and resumed from the checkpoint
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
