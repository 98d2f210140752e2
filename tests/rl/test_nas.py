"""Tests of dlbook.rl.nas: search space, controllers, REINFORCE, cache."""

import itertools

import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from dlbook.rl.nas import (
    ArchitectureCache,
    ChildConfig,
    EMABaseline,
    FactorizedController,
    LSTMController,
    ProxyTask,
    SearchConfig,
    SearchSpace,
    child_cnn,
    random_search,
    reinforce_loss,
    reinforce_search,
    train_val_split,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SPACE = SearchSpace(
    dict(image_size=[8, 12], depth=[1, 2], width=[2, 4, 6], kernel_size=[3])
)


# --- the search space -------------------------------------------------------


def test_encode_decode_are_inverse_over_the_whole_space():
    codes = SPACE.all_codes()
    assert len(codes) == len(SPACE) == 2 * 2 * 3 * 1
    assert len(set(codes)) == len(codes)
    for code in codes:
        arch = SPACE.decode(code)
        assert SPACE.encode(arch) == code
    assert SPACE.decode((1, 0, 2, 0)) == dict(
        image_size=12, depth=1, width=6, kernel_size=3
    )
    assert SPACE.decode(torch.tensor([1, 0, 2, 0])) == SPACE.decode(
        (1, 0, 2, 0)
    )


@pytest.mark.parametrize(
    "choices, match",
    [
        ({}, "empty search space"),
        (dict(depth=[]), "must not be empty"),
        (dict(depth=[1, 1]), "twice"),
        (dict(depth=3), "list of values"),
        ([("depth", [1])], "mapping"),
    ],
)
def test_bad_search_spaces_are_refused(choices, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SearchSpace(choices)


def test_bad_architectures_and_codes_are_refused():
    arch = SPACE.decode((0, 0, 0, 0))
    with pytest.raises(ValueError, match="unknown decision.*'dropout'"):
        SPACE.encode({**arch, "dropout": 0.1})
    with pytest.raises(ValueError, match="lacks.*'width'"):
        SPACE.encode({k: v for k, v in arch.items() if k != "width"})
    with pytest.raises(ValueError, match=r"arch\['width'\] must be one of"):
        SPACE.encode({**arch, "width": 5})
    with pytest.raises(ValueError, match="4 indices"):
        SPACE.decode((0, 0, 0))
    with pytest.raises(ValueError, match=r"code\[2\]"):
        SPACE.decode((0, 0, 3, 0))
    with pytest.raises(ValueError, match=r"code\[0\]"):
        SPACE.decode((-1, 0, 0, 0))


# --- controllers ------------------------------------------------------------


def test_factorized_log_prob_equals_torch_categoricals():
    torch.manual_seed(0)
    ctrl = FactorizedController(SPACE)
    for theta in ctrl.logits:
        theta.data.normal_()
    codes = torch.tensor(SPACE.all_codes())
    expected = sum(
        Categorical(logits=theta).log_prob(codes[:, d])
        for d, theta in enumerate(ctrl.logits)
    )
    torch.testing.assert_close(ctrl.log_prob(codes), expected)
    entropy = sum(Categorical(logits=t).entropy() for t in ctrl.logits)
    torch.testing.assert_close(ctrl.entropy(), entropy)


@pytest.mark.parametrize("kind", ["factorized", "lstm"])
def test_controller_samples_follow_its_log_prob(kind):
    torch.manual_seed(1)
    ctrl = (
        FactorizedController(SPACE)
        if kind == "factorized"
        else (LSTMController(SPACE, hidden=8))
    )
    if kind == "factorized":
        for theta in ctrl.logits:
            theta.data.normal_()
    codes = torch.tensor(SPACE.all_codes())
    p = ctrl.log_prob(codes).exp().detach()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)  # a distribution
    n = 20_000
    drawn = ctrl.sample(n, torch.Generator().manual_seed(0))
    index = {tuple(c): i for i, c in enumerate(codes.tolist())}
    counts = np.bincount(
        [index[tuple(c)] for c in drawn.tolist()], minlength=len(codes)
    )
    # 4 standard errors of a frequency
    se = np.sqrt(p.numpy() * (1 - p.numpy()) / n)
    assert np.all(np.abs(counts / n - p.numpy()) < 4 * se + 1e-3)


def test_lstm_decisions_depend_on_earlier_ones():
    # what a factorized policy cannot do: π(a_1 | a_0) varies with a_0
    torch.manual_seed(0)
    ctrl = LSTMController(SPACE, hidden=8)
    codes = torch.tensor(SPACE.all_codes())
    p = ctrl.log_prob(codes).exp().detach().reshape(SPACE.sizes)
    second_given_first = p.sum((2, 3)) / p.sum((1, 2, 3))[:, None]
    assert not torch.allclose(second_given_first[0], second_given_first[1])


def test_bad_codes_are_refused_by_controllers():
    ctrl = FactorizedController(SPACE)
    with pytest.raises(ValueError, match="codes must have shape"):
        ctrl.log_prob(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes\[:, 2\]"):
        ctrl.log_prob(torch.tensor([[0, 0, 3, 0]]))
    with pytest.raises(TypeError, match="integer"):
        ctrl.log_prob(torch.zeros(1, 4))


# --- REINFORCE ------------------------------------------------------------


def test_reinforce_gradient_equals_the_hand_computed_one():
    ctrl = FactorizedController(SPACE)
    theta0 = [
        torch.tensor([0.3, -0.2]),
        torch.tensor([1.0, 0.0]),
        torch.tensor([0.5, -1.0, 0.2]),
        torch.tensor([0.0]),
    ]
    for theta, value in zip(ctrl.logits, theta0, strict=True):
        theta.data.copy_(value)
    codes = torch.tensor([[0, 1, 2, 0], [1, 1, 0, 0], [0, 0, 2, 0]])
    rewards = torch.tensor([0.7, 0.5, 0.9])
    baseline = EMABaseline(decay=0.5, value=0.6)
    adv = baseline.advantages(rewards)
    torch.testing.assert_close(adv, rewards - 0.6)
    loss = reinforce_loss(ctrl.log_prob(codes), adv)
    loss.backward()
    # ∇θ_d log π(a) = onehot(a_d) − softmax(θ_d); loss = −mean_k A_k log π
    for d, theta in enumerate(ctrl.logits):
        p = torch.softmax(theta0[d], 0).numpy()
        grad = np.zeros_like(p)
        for k in range(3):
            onehot = np.eye(len(p))[int(codes[k, d])]
            grad -= float(adv[k]) * (onehot - p) / 3
        torch.testing.assert_close(theta.grad, torch.tensor(grad).float())
    # the baseline moved after use: b = 0.5·0.6 + 0.5·mean(R)
    assert baseline.value == pytest.approx(0.5 * 0.6 + 0.5 * 0.7)


def test_ema_baseline_starts_at_the_first_batch_mean():
    b = EMABaseline(decay=0.9)
    adv = b.advantages(torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(adv, torch.tensor([-1.0, 1.0]))
    assert b.value == pytest.approx(2.0)
    adv = b.advantages(torch.tensor([4.0]))
    torch.testing.assert_close(adv, torch.tensor([2.0]))
    assert b.value == pytest.approx(0.9 * 2 + 0.1 * 4)
    with pytest.raises(ValueError, match="decay"):
        EMABaseline(decay=1.0)


def synthetic_reward(space, best, noise=0.0, seed=0):
    """1 at ``best``, less the further a code is from it (plus noise)."""
    rng = np.random.default_rng(seed)

    def reward(code):
        far = sum(a != b for a, b in zip(code, best, strict=True))
        return 1.0 - 0.2 * far + noise * rng.standard_normal()

    return reward


@pytest.mark.parametrize("kind", ["factorized", "lstm"])
def test_search_concentrates_on_the_best_arm(kind):
    space = SearchSpace(
        dict(a=list(range(4)), b=list(range(3)), c=list(range(3)))
    )
    best = (2, 0, 1)
    reward = synthetic_reward(space, best, noise=0.05)
    cfg = SearchConfig(budget=400, batch_size=8, lr=0.1, controller=kind)
    result = reinforce_search(space, reward, cfg)
    assert len(result.codes) == 400
    last = result.codes[-80:]
    # uniform proposals would hit the best arm 1 time in 36
    assert np.mean([c == best for c in last]) > 0.8
    with torch.no_grad():
        p_best = float(result.controller.log_prob(torch.tensor([best])).exp())
    assert p_best > 0.8
    assert result.best()[0] == best


def test_search_without_learning_does_not_concentrate():
    # control of the test above: the same search with lr near 0 stays uniform
    space = SearchSpace(
        dict(a=list(range(4)), b=list(range(3)), c=list(range(3)))
    )
    best = (2, 0, 1)
    cfg = SearchConfig(budget=400, batch_size=8, lr=1e-8)
    result = reinforce_search(space, synthetic_reward(space, best), cfg)
    assert np.mean([c == best for c in result.codes[-80:]]) < 0.15


def test_entropy_bonus_keeps_the_policy_spread():
    space = SearchSpace(
        dict(a=list(range(4)), b=list(range(3)), c=list(range(3)))
    )
    reward = synthetic_reward(space, (2, 0, 1))
    plain = reinforce_search(space, reward, SearchConfig(budget=200))
    spread = reinforce_search(
        space, reward, SearchConfig(budget=200, entropy_weight=1.0)
    )
    with torch.no_grad():
        h_plain = float(plain.controller.entropy())
        h_spread = float(spread.controller.entropy())
    assert h_spread > h_plain + 0.5
    with pytest.raises(ValueError, match="entropy_weight"):
        SearchConfig(entropy_weight=0.1, controller="lstm")


def test_random_search_is_seeded_and_uniform():
    calls = []
    r1 = random_search(SPACE, lambda c: calls.append(c) or 0.0, 600, seed=3)
    r2 = random_search(SPACE, lambda c: 0.0, 600, seed=3)
    assert r1.codes == r2.codes == calls
    counts = np.bincount([SPACE.all_codes().index(c) for c in r1.codes])
    assert len(counts) == len(SPACE) and counts.min() > 20


def test_bad_search_settings_are_refused():
    with pytest.raises(ValueError, match="budget"):
        SearchConfig(budget=0)
    with pytest.raises(ValueError, match="lr"):
        SearchConfig(lr=0.0)
    with pytest.raises(ValueError, match="lr"):
        SearchConfig(lr=-0.1)
    with pytest.raises(ValueError, match="controller"):
        SearchConfig(controller="rnn")
    with pytest.raises(ValueError, match="budget"):
        random_search(SPACE, lambda c: 0.0, budget=0)
    with pytest.raises(ValueError, match="reward"):
        reinforce_search(SPACE, lambda c: float("nan"), SearchConfig(budget=2))
    with pytest.raises(ValueError, match="lr"):
        ChildConfig(lr=0.0)
    with pytest.raises(ValueError, match="epochs"):
        ChildConfig(epochs=0)


# --- the child networks, the proxy task and the cache ------------------------


@pytest.mark.parametrize("code", SPACE.all_codes())
def test_child_cnn_shapes(code):
    arch = SPACE.decode(code)
    net = child_cnn(arch)
    s = arch["image_size"]
    assert net(torch.zeros(2, 1, s, s)).shape == (2, 10)


def test_child_cnn_refuses_what_it_cannot_build():
    arch = dict(image_size=8, depth=1, width=2, kernel_size=4)
    with pytest.raises(ValueError, match="odd"):
        child_cnn(arch)
    with pytest.raises(ValueError, match="too small"):
        child_cnn({**arch, "kernel_size": 3, "depth": 4})


def tiny_task(space=SPACE):
    g = torch.Generator().manual_seed(0)
    # two classes told apart by the brightness of the left half
    y = torch.randint(0, 2, (96,), generator=g)
    x = torch.rand(96, 1, 12, 12, generator=g) * 0.5
    x[..., :6] += y[:, None, None, None] * 0.5
    return ProxyTask(
        space,
        x[:64],
        y[:64],
        x[64:],
        y[64:],
        ChildConfig(epochs=3, batch_size=16, lr=1e-2),
    )


def test_proxy_task_refuses_mismatched_splits():
    x, y = torch.rand(8, 1, 12, 12), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="x_train and y_train"):
        ProxyTask(SPACE, x, y[:5], x, y)
    with pytest.raises(ValueError, match="y_val"):
        ProxyTask(SPACE, x, y, x, y - 1)


def test_proxy_task_learns_and_repeats_its_reward():
    task = tiny_task()
    code = SPACE.encode(dict(image_size=8, depth=1, width=4, kernel_size=3))
    first = task(code)
    assert first > 0.8  # chance is about 0.5
    assert task(code) == first  # seeded: the same reward every time
    assert task.images("val", 8).shape == (32, 1, 8, 8)
    with pytest.raises(ValueError, match="split"):
        task.images("test", 8)


def test_cache_trains_each_architecture_once(monkeypatch):
    task = tiny_task()
    trained = []
    original = ProxyTask.train

    def counting_train(self, arch):
        trained.append(dict(arch))
        return original(self, arch)

    monkeypatch.setattr(ProxyTask, "train", counting_train)
    cache = ArchitectureCache(task)
    a, b = (0, 0, 1, 0), (1, 0, 0, 0)
    r_a = cache(a)
    assert cache(a) == r_a and cache(list(a)) == r_a
    cache(b)
    assert len(trained) == 2 and cache.misses == 2 and cache.hits == 2
    assert len(cache) == 2 and cache.seconds > 0


def test_disk_cache_round_trip_and_refuses_other_settings(tmp_path):
    calls = []

    def evaluate(code):
        calls.append(code)
        return sum(code) / 10

    path = tmp_path / "cache.json"
    first = ArchitectureCache(evaluate, path, settings=dict(epochs=1))
    for code in itertools.islice(SPACE.all_codes(), 5):
        first(code)
    again = ArchitectureCache(evaluate, path, settings=dict(epochs=1))
    values = [again(c) for c in itertools.islice(SPACE.all_codes(), 5)]
    assert len(calls) == 5 and again.hits == 5 and again.misses == 0
    assert values == [sum(c) / 10 for c in SPACE.all_codes()[:5]]
    with pytest.raises(ValueError, match="other|another"):
        ArchitectureCache(evaluate, path, settings=dict(epochs=2))


def test_train_val_split_is_fixed_disjoint_and_stratified():
    y = torch.arange(100) % 4
    x = torch.arange(100).float()[:, None]
    a = train_val_split(x, y, 20, seed=1)
    b = train_val_split(x, y, 20, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    x_tr, y_tr, x_val, y_val = a
    assert len(x_val) == 20 and len(x_tr) == 80
    assert not set(x_tr[:, 0].tolist()) & set(x_val[:, 0].tolist())
    assert torch.bincount(y_val).tolist() == [5, 5, 5, 5]
    with pytest.raises(ValueError, match="n_val"):
        train_val_split(x, y, 100)
