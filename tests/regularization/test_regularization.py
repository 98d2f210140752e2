"""k-NN, penalties, dropout and early stopping against scikit-learn, PyTorch and Keras."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook.config import seed_everything
from dlbook.regularization.regularization import (
    MLP, Dropout, EarlyStopping, MLPConfig, Penalty, bias_variance, dropout, knn_predict, l1_logistic_regression,
    soft_threshold, weight_parameters, weight_stats,
)
from dlbook.train import History, fit

# --- k-NN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 8, 30])
def test_knn_equals_scikit_learn(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(400, 6, generator=g, dtype=torch.float64)
    q = torch.randn(150, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (400,), generator=g)  # few classes and even k: vote ties happen
    ref = KNeighborsClassifier(k, algorithm="brute").fit(x.numpy(), y.numpy()).predict(q.numpy())
    assert knn_predict(x, y, q, k, chunk=64).tolist() == ref.tolist()
    t = torch.randn(400, generator=g, dtype=torch.float64)
    ref = KNeighborsRegressor(k, algorithm="brute").fit(x.numpy(), t.numpy()).predict(q.numpy())
    torch.testing.assert_close(knn_predict(x, t, q, k, regression=True), torch.from_numpy(ref))


def test_knn_with_a_list_of_k_equals_one_k_at_a_time():
    g = torch.Generator().manual_seed(0)
    x, q = torch.randn(300, 5, generator=g), torch.randn(70, 5, generator=g)
    y, t = torch.randint(0, 4, (300,), generator=g), torch.randn(300, generator=g)
    ks = [1, 2, 7, 50]
    many = knn_predict(x, y, q, ks, chunk=32)
    assert many.shape == (4, 70)
    for row, k in zip(many, ks, strict=True):
        assert torch.equal(row, knn_predict(x, y, q, k))
    torch.testing.assert_close(knn_predict(x, t, q, ks, regression=True)[2], knn_predict(x, t, q, 7, regression=True))


def test_knn_votes_for_many_k_in_any_order_equal_scikit_learn():
    """The votes counted k after k (in increasing order) give sklearn's vote for each k."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, 4, generator=g, dtype=torch.float64)
    q = torch.randn(200, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (500,), generator=g)  # even k and 4 classes: ties
    ks = [40, 2, 9, 2, 1, 16]  # unsorted, one repeated
    many = knn_predict(x, y, q, ks, chunk=70)
    for row, k in zip(many, ks, strict=True):
        ref = KNeighborsClassifier(k, algorithm="brute").fit(x.numpy(), y.numpy())
        assert row.tolist() == ref.predict(q.numpy()).tolist(), k


def test_knn_with_k1_memorizes_the_training_set():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 4, generator=g), torch.randint(0, 5, (100,), generator=g)
    assert torch.equal(knn_predict(x, y, x, 1), y)


def test_knn_errors():
    x, y = torch.randn(10, 3), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match=r"k must be an integer \(or a list of them\) between 1 and the 10"):
        knn_predict(x, y, x, 11)
    with pytest.raises(ValueError, match="x_query has 2 features"):
        knn_predict(x, y, torch.randn(4, 2), 1)
    with pytest.raises(ValueError, match="9 targets for 10"):
        knn_predict(x, y[:9], x, 1)


@pytest.mark.parametrize("k", [1, 4, 16])
def test_bias_variance_of_knn_matches_theory(k):
    """Fixed design: Var f_hat(x0) = sigma^2 / k exactly (ESL eq. 7.10), and the parts sum to the error."""
    x = torch.linspace(0, 1, 64, dtype=torch.float64)[:, None]
    f = torch.sin(2 * math.pi * x[:, 0])
    x0 = torch.rand(50, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f0 = torch.sin(2 * math.pi * x0[:, 0])
    sigma = 0.3
    bv = bias_variance(lambda xt, yt, xq: knn_predict(xt, yt, xq, k, regression=True), x, f, x0, f0,
                       noise_std=sigma, repeats=2000, generator=torch.Generator().manual_seed(2))
    # the variance estimate of 2000 draws has a relative standard error of about sqrt(2/2000) = 3%
    assert bv.variance == pytest.approx(sigma**2 / k, rel=0.1)
    assert bv.error == pytest.approx(bv.noise + bv.bias2 + bv.variance, rel=0.05)
    if k == 16:  # 16 of 64 points span a quarter period of the sine: clearly biased
        assert bv.bias2 > 0.02
    if k == 1:
        assert bv.bias2 < 0.01


def test_bias_variance_errors():
    with pytest.raises(ValueError, match="repeats must be at least 2"):
        bias_variance(lambda *a: a[2][:, 0], torch.zeros(3, 1), torch.zeros(3), torch.zeros(2, 1), torch.zeros(2),
                      noise_std=1.0, repeats=1)


# --- penalties ----------------------------------------------------------------------------------


def test_penalty_values_and_which_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ws = [model[0].weight, model[2].weight]
    assert weight_parameters(model) == ws
    p = Penalty(l1=0.1, l2=0.2)(model)
    expected = sum(0.1 * w.abs().sum() + 0.1 * (w**2).sum() for w in ws)
    torch.testing.assert_close(p, expected)
    with pytest.raises(ValueError, match="l1 must be a finite number >= 0, got -1"):
        Penalty(l1=-1)
    with pytest.raises(ValueError, match="no weight matrices"):
        Penalty(l2=1.0)(nn.PReLU())


def test_l2_penalty_equals_sgd_weight_decay():
    """Adding lambda/2 ||w||^2 to the loss is SGD's weight_decay=lambda, on the weights."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 5, dtype=torch.float64), torch.randint(0, 3, (64,))
    a = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    b = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    b.load_state_dict(a.state_dict())
    lam = 0.05
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD([{"params": weight_parameters(b), "weight_decay": lam},
                             {"params": [p for p in b.parameters() if p.ndim == 1]}], lr=0.1, momentum=0.9)
    for _ in range(20):
        for model, opt, pen in [(a, opt_a, Penalty(l2=lam)), (b, opt_b, None)]:
            loss = F.cross_entropy(model(x), y) + (pen(model) if pen else 0)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-12)


def test_soft_threshold():
    w = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    assert soft_threshold(w, 0.5).tolist() == [-1.5, 0.0, 0.0, 0.0, 1.0]


def _sparse_logistic_problem(seed=0, n=200, d=20):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.zeros(d, dtype=torch.float64)
    w[:5] = torch.tensor([2.0, -1.5, 1.0, 0.5, -0.5])
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(x @ w + 0.3)).long()
    return x, y


@pytest.mark.parametrize("lam", [0.01, 0.05])
def test_l1_logistic_regression_equals_scikit_learn(lam):
    x, y = _sparse_logistic_problem()
    ours = l1_logistic_regression(x, y, lam, steps=2000)
    ref = LogisticRegression(C=1 / (len(x) * lam), l1_ratio=1.0, solver="saga", tol=1e-12, max_iter=100_000)
    ref.fit(x.numpy(), y.numpy())
    torch.testing.assert_close(ours.weight, torch.from_numpy(ref.coef_[0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(ours.bias, torch.tensor(ref.intercept_[0], dtype=torch.float64), atol=1e-7, rtol=0)
    assert torch.equal(ours.weight == 0, torch.from_numpy(ref.coef_[0] == 0))  # the same exact zeros
    assert (ours.weight == 0).sum() >= 6  # sparse: most of the 15 useless inputs are dropped
    assert ours.objective[-1] <= ours.objective[0]


def test_l1_logistic_regression_errors():
    x, y = _sparse_logistic_problem()
    with pytest.raises(ValueError, match="lam must be positive"):
        l1_logistic_regression(x, y, 0.0)
    with pytest.raises(ValueError, match="labels 0 and 1"):
        l1_logistic_regression(x, y + 1, 0.1)


def test_l1_piles_weights_up_at_zero_l2_does_not():
    """Telling the penalties apart from the trained weights alone."""
    x, y = _sparse_logistic_problem(n=400, d=40)
    x = x.float()
    stats = {}
    for name, pen in [("none", None), ("l1", Penalty(l1=3e-3)), ("l2", Penalty(l2=3e-2))]:
        seed_everything(0)
        model = nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        fit(model, [(x, y)], opt, epochs=150, penalty=pen, progress=False)
        stats[name] = weight_stats(model[0].weight)
    assert stats["l1"].near_zero > 0.2 and stats["l2"].near_zero < 0.03 and stats["none"].near_zero < 0.03, stats
    assert stats["l2"].std < 0.9 * stats["none"].std, stats  # L2 shrinks every weight instead


def test_weight_stats_of_a_gaussian():
    g = torch.Generator().manual_seed(0)
    assert weight_stats(torch.randn(200_000, generator=g)).near_zero == pytest.approx(0.008, abs=0.001)


# --- dropout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_equals_nn_dropout_for_the_same_generator_state(p, dtype):
    x = torch.randn(37, 53, dtype=dtype, requires_grad=True)
    torch.manual_seed(123)
    ours = Dropout(p)(x)
    ours.sum().backward()
    g_ours, x.grad = x.grad, None
    torch.manual_seed(123)
    theirs = nn.Dropout(p)(x)
    theirs.sum().backward()
    assert torch.equal(ours, theirs) and torch.equal(g_ours, x.grad)


def _z(a: float, b: float, p: float, n: int) -> float:
    """Two-proportion z statistic of two drop fractions, each of n Bernoulli(p) draws."""
    return abs(a - b) / math.sqrt(2 * p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_has_the_distribution_of_nn_dropout(p):
    """Independent seeds; statistics must agree to 5 standard errors (a false alarm rate of 6e-7)."""
    n = 400_000
    x = torch.ones(n)
    ours = Dropout(p, generator=torch.Generator().manual_seed(1))(x)
    torch.manual_seed(2)
    theirs = nn.Dropout(p)(x)
    for y in (ours, theirs):  # survivors are scaled by exactly 1 / (1 - p)
        assert set(y.unique().tolist()) == {0.0, torch.tensor(1 / (1 - p)).item()}
        assert abs(y.mean().item() - 1) < 5 * math.sqrt(p / (1 - p) / n)  # unbiased: E[y] = x
        kept = (y != 0).float()
        lag1 = torch.corrcoef(torch.stack([kept[:-1], kept[1:]]))[0, 1].item()
        assert abs(lag1) < 5 / math.sqrt(n)  # neighbouring units are dropped independently
    assert _z((ours == 0).float().mean().item(), (theirs == 0).float().mean().item(), p, n) < 5
    # the test has power: a dropout with p off by 0.01 is caught
    wrong = Dropout(p + 0.01, generator=torch.Generator().manual_seed(3))(x)
    assert _z((wrong == 0).float().mean().item(), (theirs == 0).float().mean().item(), p, n) > 5


def test_dropout_is_the_identity_at_evaluation_and_edge_cases():
    x = torch.randn(8, 5)
    layer = Dropout(0.5).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert "p=0.5" in repr(layer)
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        Dropout(1.5)


# --- early stopping -----------------------------------------------------------------------------


def _keras_stopping_epoch(values, patience, min_delta, mode):
    import keras

    class Model:
        stop_training = False

    cb = keras.callbacks.EarlyStopping(monitor="m", patience=patience, min_delta=min_delta, mode=mode)
    model = Model()
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {"m": v})
        if model.stop_training:
            return epoch
    return None


def _our_stopping_epoch(values, patience, min_delta, mode):
    stopper = EarlyStopping("m", patience=patience, min_delta=min_delta, mode=mode, restore_best_weights=False)
    history = History()
    for epoch, v in enumerate(values):
        history.append({"m": v})
        if stopper(nn.Linear(1, 1), history):
            return epoch
    return None


def test_early_stopping_stops_when_keras_does():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    cases = 0
    for _ in range(12):
        # a noisy U-shaped validation curve; rounding creates exact ties
        e = np.arange(30)
        values = np.round((e - rng.uniform(5, 25)) ** 2 / 100 + rng.normal(0, 0.3, 30), 1).tolist()
        for patience in (0, 1, 3, 6):
            for min_delta in (0.0, 0.15):
                for mode in ("min", "max"):
                    ref = _keras_stopping_epoch(values, patience, min_delta, mode)
                    assert _our_stopping_epoch(values, patience, min_delta, mode) == ref, (values, patience, min_delta)
                    cases += ref is not None
    assert cases > 100  # of 192 cases most stop early do stop early, so the comparison is not vacuous


def test_early_stopping_restores_the_best_weights_in_fit():
    seed_everything(0)
    x = torch.randn(64, 3)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(3, 2)
    val = [(torch.randn(32, 3), torch.randint(0, 2, (32,)))]  # random labels: val loss soon rises
    stopper = EarlyStopping(patience=2)
    snapshots = []

    def snapshot(model, history):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    hist = fit(model, DataLoader(TensorDataset(x, y), batch_size=16), torch.optim.SGD(model.parameters(), lr=0.5),
               epochs=50, val_loader=val, callbacks=[snapshot, stopper], progress=False)
    assert len(hist) == stopper.stopped_epoch + 1 < 50
    best = int(np.argmin(hist["val_loss"]))
    assert stopper.best_epoch == best and stopper.stopped_epoch == best + 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[best][k])


def test_early_stopping_errors():
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        EarlyStopping(mode="auto")
    with pytest.raises(ValueError, match="patience must be a non-negative integer"):
        EarlyStopping(patience=-1)
    with pytest.raises(RuntimeError, match="no best weights"):
        EarlyStopping().restore(nn.Linear(1, 1))


# --- the model ----------------------------------------------------------------------------------


def test_mlp_shapes_and_dropout_layers():
    model = MLP(MLPConfig(hidden=(32, 16), dropout=0.5, input_dropout=0.2))
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert sum(isinstance(m, Dropout) for m in model.modules()) == 3
    model.eval()
    x = torch.randn(4, 784)
    assert torch.equal(model(x), model(x))
    with pytest.raises(ValueError, match="hidden widths must be positive"):
        MLP(MLPConfig(hidden=(0,)))


def test_mlp_with_dropout_learns():
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 20, generator=g) * 2
    y = torch.randint(0, 4, (512,), generator=g)
    x = centres[y] + torch.randn(512, 20, generator=g)
    model = MLP(MLPConfig(in_features=20, hidden=(64,), out_features=4, dropout=0.5))
    hist = fit(model, DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True),
               torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), epochs=8, val_loader=[(x, y)],
               progress=False)
    assert hist["train_loss"][-1] < 0.3 * hist["train_loss"][0]
    assert hist["val_acc"][-1] > 0.9  # four classes: chance is 0.25
