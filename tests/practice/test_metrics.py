"""Binary-classification metrics from scratch against scikit-learn and
torchmetrics, the Bayes-optimal threshold against the empirical cost, and the
argument checks of ``dlbook.practice.metrics``."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from torchmetrics import classification as tmc

from dlbook.practice import metrics as M


def _data(n=400, seed=0, ties=False, shift=0.8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + shift * y
    if ties:  # a coarse score: many examples share one value
        s = np.round(s, 1)
    return y, s


def _close(ours, theirs, atol=0.0):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


# --- equality with scikit-learn ---------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("drop", [False, True])
def test_roc_curve_equals_sklearn(ties, drop):
    y, s = _data(ties=ties)
    _close(
        M.roc_curve(y, s, drop_intermediate=drop),
        skm.roc_curve(y, s, drop_intermediate=drop),
    )


@pytest.mark.parametrize("ties", [False, True])
def test_pr_curve_and_scores_equal_sklearn(ties):
    y, s = _data(ties=ties, seed=1)
    _close(M.precision_recall_curve(y, s), skm.precision_recall_curve(y, s))
    assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(
        skm.average_precision_score(y, s), abs=1e-12
    )


def test_auc_of_tied_scores_counts_ties_half():
    # every positive ties with every negative: AUC is exactly 1/2
    y = np.array([0, 1, 0, 1])
    assert M.roc_auc(y, np.ones(4)) == 0.5
    # the Mann-Whitney form on a small case with ties
    y, s = _data(n=60, ties=True, seed=3)
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    u = (pos > neg).mean() + 0.5 * (pos == neg).mean()
    assert M.roc_auc(y, s) == pytest.approx(u, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(2, 60),
    seed=st.integers(0, 10_000),
    levels=st.integers(1, 6),
)
def test_property_ranking_metrics_equal_sklearn(n, seed, levels):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1  # both classes present
    s = rng.integers(0, levels, n).astype(float)  # heavy ties
    _close(M.roc_curve(y, s), skm.roc_curve(y, s))
    _close(M.precision_recall_curve(y, s), skm.precision_recall_curve(y, s))
    assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    assert M.average_precision(y, s) == pytest.approx(
        skm.average_precision_score(y, s)
    )


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_confusion_and_fbeta_equal_sklearn(beta):
    y, s = _data(seed=2)
    yhat = (s > 0.4).astype(int)
    np.testing.assert_array_equal(
        M.confusion_matrix(y, yhat), skm.confusion_matrix(y, yhat)
    )
    p, r, f, _ = skm.precision_recall_fscore_support(
        y, yhat, beta=beta, average="binary", zero_division=0
    )
    assert M.precision_recall_fbeta(y, yhat, beta) == pytest.approx(
        (p, r, f), abs=1e-12
    )


def test_fbeta_with_no_positive_prediction_is_zero_as_sklearn():
    y = np.array([0, 1, 1, 0])
    yhat = np.zeros(4, dtype=int)
    ours = M.precision_recall_fbeta(y, yhat)
    theirs = skm.precision_recall_fscore_support(
        y, yhat, average="binary", zero_division=0
    )[:3]
    assert tuple(ours) == pytest.approx(theirs)


def test_reliability_equals_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    p = rng.random(2000)  # continuous: no value falls on a bin edge
    y = (rng.random(2000) < p**1.5).astype(int)
    rel = M.reliability(y, p, n_bins=10)
    true, pred = calibration_curve(y, p, n_bins=10)
    full = rel.count > 0
    np.testing.assert_allclose(rel.frequency[full], true, atol=1e-12)
    np.testing.assert_allclose(rel.confidence[full], pred, atol=1e-12)
    assert rel.count.sum() == 2000


# --- equality with torchmetrics ---------------------------------------------


def test_scalar_metrics_equal_torchmetrics():
    y, s = _data(seed=4)
    p = 1 / (1 + np.exp(-s))
    yt, pt = torch.tensor(y), torch.tensor(p)
    yhat = (p >= 0.5).astype(int)
    np.testing.assert_array_equal(
        M.confusion_matrix(y, yhat),
        tmc.BinaryConfusionMatrix()(pt, yt).numpy(),
    )
    prf = M.precision_recall_fbeta(y, yhat, beta=2.0)
    assert prf.precision == pytest.approx(
        tmc.BinaryPrecision()(pt, yt).item(), abs=1e-6
    )
    assert prf.recall == pytest.approx(
        tmc.BinaryRecall()(pt, yt).item(), abs=1e-6
    )
    assert prf.fbeta == pytest.approx(
        tmc.BinaryFBetaScore(beta=2.0)(pt, yt).item(), abs=1e-6
    )
    assert M.roc_auc(y, p) == pytest.approx(
        tmc.BinaryAUROC()(pt, yt).item(), abs=1e-6
    )
    assert M.average_precision(y, p) == pytest.approx(
        tmc.BinaryAveragePrecision()(pt, yt).item(), abs=1e-6
    )


@pytest.mark.parametrize("n_bins", [1, 5, 15])
def test_ece_equals_torchmetrics(n_bins):
    rng = np.random.default_rng(n_bins)
    p = rng.random(3000)
    p[:20] = np.linspace(0, 1, 20)  # bin edges included, 0 and 1 too
    y = (rng.random(3000) < p**2).astype(int)
    ours = M.reliability(y, p, n_bins).ece
    theirs = tmc.BinaryCalibrationError(n_bins=n_bins)(
        torch.tensor(p), torch.tensor(y)
    )
    assert ours == pytest.approx(theirs.item(), abs=1e-6)


def test_calibrated_probabilities_have_small_ece_and_overconfident_large():
    rng = np.random.default_rng(0)
    p = rng.random(20_000)
    y = (rng.random(20_000) < p).astype(int)
    assert M.reliability(y, p, 10).ece < 0.02
    logit = 4 * np.log(p / (1 - p))  # the true log-odds, times 4
    sharp = 1 / (1 + np.exp(-logit))
    assert M.reliability(y, sharp, 10).ece > 0.1
    assert M.fit_temperature(logit, y) == pytest.approx(4.0, rel=0.1)


# --- costs, thresholds and base rates ---------------------------------------


def test_bayes_threshold_minimises_the_empirical_cost():
    # perfectly calibrated scores: P(y = 1 | p) = p
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 2.0, 200_000)
    y = (rng.random(p.size) < p).astype(int)
    for c_fp, c_fn in [(1, 1), (10, 1), (1, 4)]:
        t = M.bayes_threshold(c_fp, c_fn)
        fpr, tpr, thr = M.roc_curve(y, p, drop_intermediate=False)
        cost = M.expected_cost(fpr, tpr, y.mean(), c_fp, c_fn)
        best = thr[np.argmin(cost)]
        assert best == pytest.approx(t, abs=0.03), (c_fp, c_fn)
        at_t = cost[np.searchsorted(-thr, -t, side="right") - 1]
        assert at_t <= cost.min() * 1.01


def test_expected_cost_matches_the_confusion_counts():
    y, s = _data(seed=5)
    fpr, tpr, thr = M.roc_curve(y, s, drop_intermediate=False)
    k = len(thr) // 2
    (tn, fp), (fn, tp) = M.confusion_matrix(y, (s >= thr[k]).astype(int))
    direct = (3.0 * fp + 2.0 * fn) / y.size
    assert M.expected_cost(fpr, tpr, y.mean(), 3.0, 2.0)[k] == pytest.approx(
        direct
    )


def test_prior_shift_is_bayes_rule():
    # at equal priors the posterior is the likelihood ratio's; moving to
    # π′ must give the posterior computed directly from the densities
    x = np.linspace(-3, 3, 13)
    lr = np.exp(x)  # a likelihood ratio p(x | 1) / p(x | 0)
    p_half = lr / (1 + lr)
    for pi in [0.3, 0.01]:
        direct = lr * pi / (lr * pi + 1 - pi)
        np.testing.assert_allclose(M.shift_prior(p_half, 0.5, pi), direct)
    # shifting back and forth is the identity
    p = np.array([0.01, 0.2, 0.9])
    back = M.shift_prior(M.shift_prior(p, 0.1, 0.001), 0.001, 0.1)
    np.testing.assert_allclose(back, p)


def test_ppv_of_a_good_test_at_a_tiny_base_rate():
    ppv = M.positive_predictive_value(0.99, 0.99, 1e-4)
    assert ppv == pytest.approx(0.99e-4 / (0.99e-4 + 0.01 * (1 - 1e-4)))
    assert ppv < 0.01
    assert M.iso_cost_slope(0.5, 1, 1) == 1.0
    assert M.iso_cost_slope(0.1, 10, 1) == pytest.approx(90.0)


def test_subsample_positives_hits_the_base_rate_and_keeps_negatives():
    y = np.r_[np.zeros(900, int), np.ones(100, int)]
    idx = M.subsample_positives(y, 0.01, np.random.default_rng(0))
    assert (y[idx] == 0).sum() == 900
    assert y[idx].mean() == pytest.approx(0.01, abs=0.002)


def test_metrics_accept_tensors_and_booleans():
    y, s = _data(seed=6)
    assert M.roc_auc(torch.tensor(y), torch.tensor(s)) == M.roc_auc(y, s)
    assert M.roc_auc(y.astype(bool), s) == M.roc_auc(y, s)


def test_one_vs_rest_logit_is_the_log_odds_of_the_softmax():
    z = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)) * 3
    p = torch.softmax(z.double(), 1)[:, 7].numpy()
    np.testing.assert_allclose(M.sigmoid(M.one_vs_rest_logit(z, 7)), p)
    with pytest.raises(ValueError, match="k must be an integer"):
        M.one_vs_rest_logit(z, 10)


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: M.roc_auc([0, 1], np.r_[0.1, 0.2]), TypeError, "y_true"),
        (
            lambda: M.roc_auc(np.r_[0, 1], np.r_[0.1, np.nan]),
            ValueError,
            "y_score must be finite",
        ),
        (
            lambda: M.average_precision(np.r_[0, 1], np.r_[0.1, np.inf]),
            ValueError,
            "y_score must be finite",
        ),
        (
            lambda: M.roc_curve(np.r_[0, 2], np.r_[0.1, 0.2]),
            ValueError,
            r"y_true must hold labels in \[0, 2\)",
        ),
        (
            lambda: M.roc_curve(np.r_[0.0, 1.0], np.r_[0.1, 0.2]),
            TypeError,
            "y_true must hold integer class labels",
        ),
        (
            lambda: M.roc_curve(np.r_[0, 1, 1], np.r_[0.1, 0.2]),
            ValueError,
            "y_true and y_score must have the same length",
        ),
        (
            lambda: M.confusion_matrix(np.r_[0, 1], np.r_[0, 1, 1]),
            ValueError,
            "y_true and y_pred must have the same length",
        ),
        (
            lambda: M.roc_auc(np.r_[1, 1], np.r_[0.1, 0.2]),
            ValueError,
            "both classes",
        ),
        (
            lambda: M.roc_auc(np.r_[0, 1][:0], np.r_[0.1][:0]),
            ValueError,
            "y_true must not be empty",
        ),
        (
            lambda: M.reliability(np.r_[0, 1], np.r_[0.1, 0.2], n_bins=0),
            ValueError,
            "n_bins must be an integer >= 1",
        ),
        (
            lambda: M.reliability(np.r_[0, 1], np.r_[0.1, 1.2]),
            ValueError,
            r"y_prob must hold probabilities in \[0, 1\]",
        ),
        (
            lambda: M.precision_recall_fbeta(np.r_[0, 1], np.r_[0, 1], 0),
            ValueError,
            "beta must be",
        ),
        (lambda: M.bayes_threshold(0, 1), ValueError, "cost_fp must be"),
        (lambda: M.bayes_threshold(1, -2), ValueError, "cost_fn must be"),
        (
            lambda: M.bayes_threshold(1, math.nan),
            ValueError,
            "cost_fn must be",
        ),
        (
            lambda: M.positive_predictive_value(0.9, 0.9, 0.0),
            ValueError,
            r"base_rate must be a finite number in \(0, 1\)",
        ),
        (
            lambda: M.shift_prior(np.r_[0.5], 0.1, 1.0),
            ValueError,
            "new_base_rate must be",
        ),
        (
            lambda: M.expected_cost(np.r_[0.0], np.r_[1.0], 1.5, 1, 1),
            ValueError,
            "base_rate must be",
        ),
        (
            lambda: M.subsample_positives(
                np.r_[0, 0, 1], 0.9, np.random.default_rng(0)
            ),
            ValueError,
            "base_rate must be reachable",
        ),
    ],
)
def test_bad_input_is_refused(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
