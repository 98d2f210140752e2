"""The NumPy autodiff engine and the layer-wise backward pass against torch.autograd and central differences."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlbook.foundations.backprop import (
    MLP, SGDConfig, Tensor, accuracy, batches, cross_entropy, gradient_check, mlp_backward, numerical_gradient,
    relative_error, topological_order, train,
)

RNG = np.random.default_rng(0)


def _arrays(*shapes, positive=False):
    out = [RNG.normal(size=s) for s in shapes]
    return [np.abs(a) + 0.5 for a in out] if positive else out


# Each case: engine function, the same function in torch, input shapes, positive inputs only.
OPS = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, [(4, 3), (4, 3)], False),
    "add_broadcast_row": (lambda a, b: a + b, lambda a, b: a + b, [(4, 3), (3,)], False),
    "add_broadcast_col": (lambda a, b: a + b, lambda a, b: a + b, [(4, 1), (4, 3)], False),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, [(4, 3), (1, 3)], False),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, [(4, 3), (4, 3)], False),
    "div": (lambda a, b: a / b, lambda a, b: a / b, [(4, 3), (4, 3)], True),
    "rdiv_scalar": (lambda a: 2.0 / a, lambda a: 2.0 / a, [(5,)], True),
    "rsub_scalar": (lambda a: 1.0 - a, lambda a: 1.0 - a, [(5,)], False),
    "pow": (lambda a: a**3, lambda a: a**3, [(4, 3)], False),
    "sqrt": (lambda a: a**0.5, lambda a: a**0.5, [(4, 3)], True),
    "matmul": (lambda a, b: a @ b, lambda a, b: a @ b, [(4, 3), (3, 5)], False),
    "sum_all": (lambda a: a.sum(), lambda a: a.sum(), [(4, 3)], False),
    "sum_axis0": (lambda a: a.sum(axis=0), lambda a: a.sum(dim=0), [(4, 3)], False),
    "sum_axis1_keep": (lambda a: a.sum(axis=1, keepdims=True), lambda a: a.sum(dim=1, keepdim=True), [(4, 3)], False),
    "mean_axis1": (lambda a: a.mean(axis=1), lambda a: a.mean(dim=1), [(4, 3)], False),
    "reshape": (lambda a: a.reshape(3, 4), lambda a: a.reshape(3, 4), [(4, 3)], False),
    "transpose": (lambda a: a.T, lambda a: a.T, [(4, 3)], False),
    "exp": (lambda a: a.exp(), torch.exp, [(4, 3)], False),
    "log": (lambda a: a.log(), torch.log, [(4, 3)], True),
    "tanh": (lambda a: a.tanh(), torch.tanh, [(4, 3)], False),
    "sigmoid": (lambda a: a.sigmoid(), torch.sigmoid, [(4, 3)], False),
    "relu": (lambda a: a.relu(), torch.relu, [(4, 3)], False),
    "log_softmax": (lambda a: a.log_softmax(axis=1), lambda a: F.log_softmax(a, dim=1), [(4, 3)], False),
    "log_softmax_axis0": (lambda a: a.log_softmax(axis=0), lambda a: F.log_softmax(a, dim=0), [(4, 3)], False),
    "reuse": (lambda a: a * a + a.tanh() * a, lambda a: a * a + a.tanh() * a, [(4, 3)], False),
}


@pytest.mark.parametrize("name", list(OPS))
def test_every_operation_equals_torch_autograd(name):
    ours_fn, torch_fn, shapes, positive = OPS[name]
    arrays = _arrays(*shapes, positive=positive)
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = ours_fn(*ours), torch_fn(*theirs)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    g = RNG.normal(size=out.shape)  # a random output gradient tests the whole vector-Jacobian product
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(torch.from_numpy(a.grad), b.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", [n for n in OPS if n != "relu"])
def test_every_operation_passes_the_gradient_check(name):
    ours_fn, _, shapes, positive = OPS[name]
    params = [Tensor(a, requires_grad=True) for a in _arrays(*shapes, positive=positive)]
    weights = RNG.normal(size=ours_fn(*params).shape)
    errors = gradient_check(lambda: (ours_fn(*params) * weights).sum(), params)
    assert max(errors) < 1e-7, errors


def test_cross_entropy_equals_torch():
    logits, y = RNG.normal(size=(6, 4)) * 3, RNG.integers(0, 4, 6)
    z = Tensor(logits, requires_grad=True)
    zt = torch.tensor(logits, requires_grad=True)
    loss, ref = cross_entropy(z, y), F.cross_entropy(zt, torch.from_numpy(y))
    loss.backward()
    ref.backward()
    assert float(loss.data) == pytest.approx(ref.item(), rel=1e-13)
    torch.testing.assert_close(torch.from_numpy(z.grad), zt.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_mlp_gradients_equal_torch_and_the_layerwise_equations(activation):
    model = MLP((10, 8, 6, 3), activation, seed=1)
    x, y = RNG.normal(size=(7, 10)), RNG.integers(0, 3, 7)
    loss = cross_entropy(model(x), y)
    loss.backward()
    net = model.to_torch()
    ref = F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
    ref.backward()
    assert float(loss.data) == pytest.approx(ref.item(), rel=1e-13)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linears):
        torch.testing.assert_close(torch.from_numpy(model.params[2 * i].grad), lin.weight.grad.T, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(torch.from_numpy(model.params[2 * i + 1].grad), lin.bias.grad, rtol=1e-12, atol=1e-14)
    manual_loss, gW, gb = mlp_backward([p.data for p in model.params[::2]], [p.data for p in model.params[1::2]], x, y, activation)
    assert manual_loss == pytest.approx(float(loss.data), rel=1e-14)
    for i in range(len(gW)):
        np.testing.assert_allclose(gW[i], model.params[2 * i].grad, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(gb[i], model.params[2 * i + 1].grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_mlp_passes_the_gradient_check_in_float64(activation):
    model = MLP((6, 5, 4, 3), activation, seed=2)
    x, y = RNG.normal(size=(9, 6)), RNG.integers(0, 3, 9)
    errors = gradient_check(lambda: cross_entropy(model(x), y), model.params)
    assert max(errors) < 1e-7, errors


def test_the_gradient_check_catches_a_wrong_gradient():
    a = Tensor(RNG.normal(size=5), requires_grad=True)

    def wrong_square(t):  # forward t^2, backward claims 3t instead of 2t
        return t._result(t.data**2, (t,), "wrong", lambda g: t._accumulate(g * 3 * t.data))

    assert gradient_check(lambda: wrong_square(a).sum(), [a])[0] > 0.1


def test_numerical_gradient_of_a_known_function():
    x = np.array([0.3, -1.2, 2.0])
    g = numerical_gradient(lambda: float(np.sum(np.sin(x) * x)), x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(x, [0.3, -1.2, 2.0])  # restored
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda: 0.0, x.astype(np.float32))


def test_relative_error():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0
    assert relative_error(np.array([1.0]), np.array([-1.0])) == 1.0


def test_gradients_accumulate_until_zero_grad():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (a * a).sum().backward()
    (a * a).sum().backward()
    np.testing.assert_array_equal(a.grad, [4.0, 8.0])
    a.zero_grad()
    assert a.grad is None


def test_no_graph_without_requires_grad():
    a, b = Tensor(np.ones(3)), Tensor(np.ones(3), requires_grad=True)
    assert not (a * 2).requires_grad and (a * 2)._parents == ()
    assert (a * b).requires_grad
    with pytest.raises(ValueError, match="does not require a gradient"):
        (a * 2).sum().backward()


def test_a_long_chain_does_not_hit_the_recursion_limit():
    x = Tensor(np.array(0.5), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001**5000)
    assert len(topological_order(y)) == 10001  # x, 5000 constants, 5000 products


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="needs a scalar"):
        Tensor(np.ones(3), requires_grad=True).backward()
    with pytest.raises(ValueError, match="2-D"):
        Tensor(np.ones(3)) @ Tensor(np.ones(3))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        cross_entropy(Tensor(np.ones((2, 3))), np.array([0, 3]))
    with pytest.raises(ValueError, match="sizes"):
        MLP((10,))
    with pytest.raises(ValueError, match="activation"):
        MLP((4, 2), "gelu")
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        MLP((4, 2))(np.ones((3, 5)))


def test_batches_cover_every_example_once_per_epoch():
    idx = list(batches(10, 4, np.random.default_rng(0)))
    assert [len(i) for i in idx] == [4, 4, 2]
    assert sorted(np.concatenate(idx).tolist()) == list(range(10))


def test_sgd_run_equals_torch_sgd_step_for_step():
    x, y = RNG.normal(size=(40, 6)), RNG.integers(0, 3, 40)
    model = MLP((6, 8, 3), "tanh", seed=3)
    net = model.to_torch()
    cfg = SGDConfig(lr=0.2, batch_size=8, epochs=2, seed=5)
    train(model, x, y, cfg)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    for _ in range(cfg.epochs):
        for idx in batches(len(x), cfg.batch_size, rng):
            opt.zero_grad()
            F.cross_entropy(net(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])).backward()
            opt.step()
    torch.testing.assert_close(torch.from_numpy(model.params[0].data), net[0].weight.detach().T, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(torch.from_numpy(model.params[3].data), net[2].bias.detach(), rtol=1e-12, atol=1e-13)


def test_training_on_mnist_learns_and_repeats_exactly():
    from dlbook.data import load_mnist

    m = load_mnist("quick", n_train=1000, n_test=500)
    x, y = m.x_train.flatten(1).double().numpy(), m.y_train.numpy()
    xt, yt = m.x_test.flatten(1).double().numpy(), m.y_test.numpy()
    runs = []
    for _ in range(2):
        model = MLP((784, 32, 10), seed=0)
        before = float(cross_entropy(model(x), y).data)
        history = train(model, x, y, SGDConfig(lr=0.2, epochs=5), xt, yt)
        runs.append((history["train_loss"], history["test_acc"]))
    assert runs[0] == runs[1]  # seeded: the same numbers twice
    assert history["train_loss"][-1] < before / 3
    assert accuracy(model, xt, yt) == history["test_acc"][-1] > 0.75  # chance is 0.1
