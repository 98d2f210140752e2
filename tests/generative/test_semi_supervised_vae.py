"""Kingma et al.'s M2: the labelled bound against torch.distributions term by
term, the unlabelled bound against its definition, the loss J^α, the mixed
batches, a short run that must learn to classify, and the argument checks."""

import math

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Categorical,
    Normal,
    kl_divergence,
)
from torch.utils.data import DataLoader, TensorDataset

from dlbook.generative.semi_supervised_vae import (
    error_rate,
    hide_labels,
    train_on_labels,
    M2,
    M2Config,
    M2Loss,
    M2Output,
    MixedBatchSampler,
    labelled_subset,
    m2_accuracy,
    unlabelled_bound,
)
from dlbook.train import fit


def _reference_bound(model, x, y, eps):
    """−L(x, y) of the paper's eq. 6 by torch.distributions, z = μ + σε."""
    c = model.config.classes
    onehot = torch.nn.functional.one_hot(torch.tensor(y), c).to(x.dtype)
    h = torch.nn.functional.softplus(model.enc_x(x) + model.enc_y(onehot))
    mu, logvar = model.to_mu(h), model.to_logvar(h)
    q = Normal(mu, (0.5 * logvar).exp())
    z = mu + q.scale * eps
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    logits = model.decode(onehot.expand(len(x), c), z)
    log_px = Bernoulli(logits=logits).log_prob(x).sum(-1)
    log_py = Categorical(logits=torch.zeros(c, dtype=x.dtype)).log_prob(
        torch.tensor(y)
    )
    return log_px + log_py - kl_divergence(q, prior).sum(-1)


def test_labelled_bound_equals_torch_distributions_for_every_class():
    torch.manual_seed(0)
    config = M2Config(in_features=12, classes=3, latent=2, hidden=8)
    model = M2(config).double()
    x = torch.randint(0, 2, (5, 12)).double()
    # forward draws ε of shape (N, C, latent) from the global generator
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    eps = torch.randn(5, 3, 2, dtype=torch.float64)
    for y in range(3):
        torch.testing.assert_close(
            out.bound[:, y], _reference_bound(model, x, y, eps[:, y])
        )


def test_unlabelled_bound_is_its_definition_and_below_the_best_class():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64)
    bound = -50 + torch.randn(4, 3, generator=g, dtype=torch.float64)
    out = M2Output(logits, bound)
    q = torch.softmax(logits, 1)
    entropy = Categorical(logits=logits).entropy()
    torch.testing.assert_close(
        unlabelled_bound(out), (q * bound).sum(1) + entropy
    )
    # −U(x) ≤ log Σ_y exp(−L(x, y)), the bound on log p(x) it lower-bounds,
    # with equality when q(y | x) is the posterior over classes
    assert (unlabelled_bound(out) <= torch.logsumexp(bound, 1) + 1e-12).all()
    best = M2Output(torch.log_softmax(bound, 1), bound)
    torch.testing.assert_close(
        unlabelled_bound(best), torch.logsumexp(bound, 1)
    )


def test_unlabelled_bound_equals_the_enumeration_over_classes():
    """−U(x) of the model, against Σ_y q(y | x) (−L(x, y)) + H(q(y | x))
    built independently: each −L(x, y) from torch.distributions with the
    same ε, q(y | x) and its entropy from a Categorical."""
    torch.manual_seed(0)
    config = M2Config(in_features=12, classes=3, latent=2, hidden=8)
    model = M2(config).double()
    x = torch.randint(0, 2, (5, 12)).double()
    torch.manual_seed(1)
    got = unlabelled_bound(model(x))
    torch.manual_seed(1)
    eps = torch.randn(5, 3, 2, dtype=torch.float64)
    q = Categorical(logits=model.classifier(x))
    expected = q.entropy()
    for y in range(3):
        expected = expected + q.probs[:, y] * _reference_bound(
            model, x, y, eps[:, y]
        )
    torch.testing.assert_close(got, expected)


def test_gradient_of_the_unlabelled_loss_on_the_logits_by_hand():
    """The loss minimised is U(x) = −(Σ_y q_y b_y + H(q)), b_y = −L(x, y).
    Its gradient on logit k is −q_k (f_k − Σ_j q_j f_j), f_j = b_j − log q_j:
    it raises the class whose bound is best, and with equal bounds it pulls
    q towards uniform (the entropy's sign)."""
    # q uniform over two classes, class 0 explains x better by 4 nats:
    # f = (−10 + log 2, −14 + log 2), mean −12 + log 2, gradient (−1, +1)
    logits = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    bound = torch.tensor([[-10.0, -14.0]], dtype=torch.float64)
    (-unlabelled_bound(M2Output(logits, bound)).sum()).backward()
    torch.testing.assert_close(
        logits.grad, torch.tensor([[-1.0, 1.0]], dtype=torch.float64)
    )
    # equal bounds, q = softmax(1, 0): a descent step lowers the larger logit
    logits = torch.tensor([[1.0, 0.0]], dtype=torch.float64).requires_grad_()
    bound = torch.full((1, 2), -12.0, dtype=torch.float64)
    (-unlabelled_bound(M2Output(logits, bound)).sum()).backward()
    q = torch.softmax(logits.detach(), 1)[0]
    f = -q.log()
    g0 = -(q[0] * (f[0] - (q * f).sum())).item()
    assert g0 > 0
    torch.testing.assert_close(logits.grad[0, 0].item(), g0)
    torch.testing.assert_close(logits.grad[0, 1].item(), -g0)


def test_loss_is_the_authors_per_example_weighting():
    """Kingma's learn_yz_x_ss.py (nips14-ssl) minimises, with one minibatch
    holding the whole data set, −(Σ_l (b_l + β log q(y_l | x_l)) − Σ_u U) / N
    with β = a · N / N_l and a = 0.1; the paper writes α = a · N."""
    out = _random_output(7, 4, seed=2)
    y = torch.tensor([3, -1, -1, 0, -1, 1, -1])
    lab = y >= 0
    n, n_l, a = 7, 3, 0.1
    beta = a * n / n_l
    log_q = torch.log_softmax(out.class_logits, 1)
    b_l = out.bound[lab].gather(1, y[lab][:, None]).squeeze(1)
    logq_l = log_q[lab].gather(1, y[lab][:, None]).squeeze(1)
    q_u, log_q_u = log_q[~lab].exp(), log_q[~lab]
    minus_u = (q_u * (out.bound[~lab] - log_q_u)).sum(1)
    authors = -((b_l + beta * logq_l).sum() + minus_u.sum()) / n
    torch.testing.assert_close(M2Loss(a * n, n_l, n - n_l)(out, y), authors)


def _random_output(n, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64)
    bound = -50 + torch.randn(n, c, generator=g, dtype=torch.float64)
    return M2Output(logits, bound)


def test_loss_on_the_whole_data_set_is_the_papers_objective_over_n():
    """J^α = Σ_l L + Σ_u U + α mean_l(−log q(y | x)) (eqs. 8, 9) by hand."""
    out = _random_output(5, 3)
    y = torch.tensor([2, -1, 0, -1, -1])
    alpha = 0.1 * 5  # the paper's α = 0.1 · N
    log_q = torch.log_softmax(out.class_logits, 1)
    q = log_q.exp()
    labelled_bound = out.bound[0, 2] + out.bound[2, 0]  # −L summed
    unlabelled = sum(
        (q[i] * out.bound[i]).sum() - (q[i] * log_q[i]).sum()
        for i in (1, 3, 4)
    )  # −U summed
    ce = -(log_q[0, 2] + log_q[2, 0]) / 2
    expected = (-labelled_bound - unlabelled + alpha * ce) / 5
    torch.testing.assert_close(M2Loss(alpha, 2, 3)(out, y), expected)
    # the accuracy metric looks at the labelled rows only
    pred = out.class_logits.argmax(1)
    assert m2_accuracy(out, y) == ((pred[[0, 2]] == y[[0, 2]]).double().mean())


def test_loss_does_not_depend_on_how_often_the_sampler_repeats_labels():
    """Each kind's mean is weighted by its share of the data set, so a batch
    that repeats its labelled rows estimates the same objective."""
    out = _random_output(4, 3, seed=1)
    y = torch.tensor([1, 0, -1, -1])
    loss = M2Loss(alpha=3.0, n_labelled=10, n_unlabelled=90)
    rep = torch.tensor([0, 1, 0, 1, 0, 1, 2, 3])
    repeated = M2Output(out.class_logits[rep], out.bound[rep])
    torch.testing.assert_close(loss(repeated, y[rep]), loss(out, y))
    # α weighs the cross-entropy only: the difference of two α is α' − α
    # times the labelled mean of −log q(y | x), over N
    ce = torch.nn.functional.cross_entropy(out.class_logits[:2], y[:2])
    other = M2Loss(alpha=5.0, n_labelled=10, n_unlabelled=90)
    torch.testing.assert_close(other(out, y) - loss(out, y), 2.0 * ce / 100)


def test_labelled_weight_scales_both_labelled_terms_and_nothing_else():
    """λ = N_u / N_l weighs the labelled images' mean of L + β(−log q), with
    the authors' β = α / N_l, as much as the unlabelled mean of U."""
    out = _random_output(6, 3, seed=3)
    y = torch.tensor([0, -1, 2, -1, -1, -1])
    n_l, n_u, alpha = 10, 90, 0.1 * 100
    lam = n_u / n_l
    log_q = torch.log_softmax(out.class_logits, 1)
    b_l = out.bound[[0, 2], [0, 2]]
    logq_l = log_q[[0, 2], [0, 2]]
    rows = [1, 3, 4, 5]
    minus_u = unlabelled_bound(
        M2Output(out.class_logits[rows], out.bound[rows])
    )
    beta = alpha / n_l
    equal = n_u / 100 * (-(b_l + beta * logq_l).mean() - minus_u.mean())
    loss = M2Loss(alpha, n_l, n_u, labelled_weight=lam)
    torch.testing.assert_close(loss(out, y), equal)
    # on unlabelled rows alone λ changes nothing
    unl = torch.tensor(rows)
    part = M2Output(out.class_logits[unl], out.bound[unl])
    torch.testing.assert_close(
        loss(part, y[unl]), M2Loss(alpha, n_l, n_u)(part, y[unl])
    )


def test_labelled_subset_is_balanced_and_seeded():
    labels = torch.arange(10).repeat(30)
    idx = labelled_subset(labels, 20, seed=3)
    assert torch.bincount(labels[idx], minlength=10).tolist() == [2] * 10
    assert torch.equal(idx, labelled_subset(labels, 20, seed=3))
    assert not torch.equal(idx, labelled_subset(labels, 20, seed=4))


def test_mixed_batches_hold_labelled_examples_and_cover_the_rest_once():
    labelled = torch.arange(4)
    unlabelled = torch.arange(4, 30)
    sampler = MixedBatchSampler(
        labelled,
        unlabelled,
        batch_size=8,
        labelled_per_batch=2,
        generator=torch.Generator().manual_seed(0),
    )
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(26 / 6)
    assert all(sum(i < 4 for i in b) == 2 for b in batches)
    seen = sorted(i for b in batches for i in b if i >= 4)
    assert seen == unlabelled.tolist()


def test_a_short_run_learns_to_classify():
    """Two clusters of binary patterns per class, 2 labels per class: the bound
    must improve and q(y | x) must beat chance (1/3) by a wide margin."""
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(3, 2, 20, generator=g) > 0.5).float()  # (C, 2, D)
    y = torch.arange(3).repeat_interleave(100)
    which = torch.randint(0, 2, (300,), generator=g)
    flip = torch.rand(300, 20, generator=g) < 0.05
    x = (protos[y, which] + flip).remainder(2)
    idx = labelled_subset(y, 6, seed=0)
    observed = torch.full_like(y, -1)
    observed[idx] = y[idx]
    rest = torch.tensor([i for i in range(300) if i not in set(idx.tolist())])
    sampler = MixedBatchSampler(
        idx,
        rest,
        batch_size=30,
        labelled_per_batch=6,
        generator=torch.Generator().manual_seed(0),
    )
    loader = DataLoader(TensorDataset(x, observed), batch_sampler=sampler)
    torch.manual_seed(0)
    model = M2(M2Config(in_features=20, classes=3, latent=2, hidden=32))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    history = fit(
        model,
        loader,
        opt,
        epochs=25,
        loss_fn=M2Loss(0.1 * len(x), len(idx), len(rest)),  # the paper α
        metrics={},
        progress=False,
    )
    assert history["train_loss"][-1] < 0.7 * history["train_loss"][0]
    with torch.no_grad():
        acc = (model.classify(x).argmax(1) == y).float().mean().item()
    assert acc > 0.5, acc  # chance is 1/3


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="latent must be an integer >= 1"):
        M2Config(latent=0)
    with pytest.raises(ValueError, match="classes must be an integer >= 2"):
        M2Config(classes=1)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        M2Config(likelihood="poisson")
    out = M2Output(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\) or -1"):
        M2Loss(1.0, 1, 1)(out, torch.tensor([0, -2]))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\) or -1"):
        M2Loss(1.0, 1, 1)(out, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"labels in \[0, 10\) or -1"):
        M2Loss(1.0, 1, 1)(
            M2Output(torch.zeros(1, 10), torch.zeros(1, 10)),
            torch.tensor([10]),
        )
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        M2Loss(-1.0, 1, 1)
    with pytest.raises(ValueError, match="n_labelled must be an integer"):
        M2Loss(1.0, 0, 10)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="labelled_weight must be"):
            M2Loss(1.0, 1, 1, labelled_weight=bad)
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        labelled_subset(torch.arange(10).repeat(5), 15)
    with pytest.raises(ValueError, match="labelled_per_batch"):
        MixedBatchSampler(torch.arange(2), torch.arange(2, 9), 4, 4)
    with pytest.raises(ValueError, match="both be non-empty"):
        MixedBatchSampler(torch.arange(0), torch.arange(2, 9), 4, 1)
    model = M2(M2Config(in_features=4, classes=2, latent=1, hidden=3))
    with pytest.raises(ValueError, match="4 features per example"):
        model(torch.rand(2, 5))
    # a Bernoulli decoder needs pixels in [0, 1]; a Gaussian one takes any
    with pytest.raises(ValueError, match=r"x must hold values in \[0"):
        model(torch.rand(2, 4) + 0.5)
    gaussian = M2(
        M2Config(
            in_features=4, classes=2, latent=1, hidden=3, likelihood="gaussian"
        )
    )
    assert torch.isfinite(gaussian(torch.randn(2, 4) * 3).bound).all()


def test_hide_labels_keeps_only_the_labelled_ones():
    labels = torch.tensor([3, 1, 4, 1, 5, 9])
    unlabelled, observed = hide_labels(labels, torch.tensor([4, 1]))
    assert unlabelled.tolist() == [0, 2, 3, 5]
    assert observed.tolist() == [-1, 1, -1, -1, 5, -1]
    assert labels.tolist() == [3, 1, 4, 1, 5, 9]  # a copy, not a mask in place
    with pytest.raises(ValueError, match="labelled must hold indices in"):
        hide_labels(labels, torch.tensor([6]))


def test_error_rate_counts_wrong_argmaxes():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    assert error_rate(lambda x: x, logits, torch.tensor([0, 1, 1, 0])) == 0.5


def test_train_on_labels_fits_the_labelled_set():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Softplus(), torch.nn.Linear(16, 2)
    )
    before = error_rate(net, x, y)
    assert train_on_labels(net, x, y, steps=200, lr=1e-2) is net
    assert error_rate(net, x, y) == 0.0 < before
    with pytest.raises(ValueError, match="steps"):
        train_on_labels(net, x, y, steps=0)
