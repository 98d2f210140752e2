"""Evaluation metrics for binary decisions, and the cost of a wrong one.

Every metric of a binary classifier is computed here from scratch, in NumPy
and without Python loops over the examples:

* the confusion matrix (TN, FP, FN, TP) and precision, recall, F1 and F-beta;
* the ROC curve and the area under it (Fawcett 2006), tied scores handled as
  scikit-learn does (one point per distinct score, so a tie is a diagonal
  segment and earns half credit);
* the precision-recall curve and average precision, scikit-learn's step
  sum, not the interpolated area (Saito and Rehmsmeier 2015 on why PR beats
  ROC under imbalance);
* calibration: the reliability diagram and the expected calibration error
  with equal-width bins (Guo et al. 2017), and temperature scaling;
* cost-sensitive decisions: the Bayes-optimal threshold for given costs of a
  false positive and a false negative (Elkan 2001), the same threshold after
  a change of base rate, the expected cost, and the predictive value of a
  positive from Bayes' rule.

Checked against: ``sklearn.metrics`` (``confusion_matrix``,
``precision_recall_fscore_support``, ``fbeta_score``, ``roc_curve``,
``roc_auc_score``, ``precision_recall_curve``, ``average_precision_score``)
and ``sklearn.calibration.calibration_curve``, and torchmetrics'
``Binary*`` metrics, ``BinaryCalibrationError`` included, in
``tests/practice/test_metrics.py``.

Chapter: ``book/practice/metrics.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from dlbook.checks import (
    check_array,
    check_int,
    check_labels,
    check_nonempty,
    check_number,
    check_same_length,
)

# --- input checks ----------------------------------------------------------


def _numpy(name: str, x: Any) -> np.ndarray:
    """A tensor or array as a NumPy array (anything else is refused)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return check_array(name, x, ndim=1)


def _labels(name: str, y: Any) -> np.ndarray:
    """Binary labels 0/1 (booleans allowed) as an int64 array."""
    y = _numpy(name, y)
    if y.dtype == bool:
        y = y.astype(np.int64)
    check_nonempty(name, y)
    return check_labels(name, y, 2).astype(np.int64)


def _scores(name: str, s: Any) -> np.ndarray:
    """Finite real scores as a float64 array."""
    s = _numpy(name, s)
    if not (np.issubdtype(s.dtype, np.floating) or s.dtype.kind in "iu"):
        raise TypeError(f"{name} must hold real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    return check_array(name, s, finite=True, nonempty=True)


def _probabilities(name: str, p: Any) -> np.ndarray:
    p = _scores(name, p)
    if p.min() < 0 or p.max() > 1:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values from "
            f"{p.min():.4g} to {p.max():.4g}"
        )
    return p


def _pair(y_true: Any, y_score: Any, name: str = "y_score"):
    y = _labels("y_true", y_true)
    s = _scores(name, y_score)
    check_same_length(y_true=y, **{name: s})
    return y, s


def _both_classes(y: np.ndarray, what: str) -> None:
    if y.min() == y.max():
        raise ValueError(
            f"y_true must contain both classes for {what}, got only "
            f"label {int(y[0])}"
        )


# --- a detector from a multi-class classifier ------------------------------


def one_vs_rest_logit(logits: torch.Tensor, k: int) -> np.ndarray:
    """The log-odds that the class is k, from a classifier's K logits:

        log P(k | x) / (1 − P(k | x)) = z_k − log Σ_{j≠k} exp z_j.

    It turns a softmax classifier into a detector of one class whose
    score is a calibrated probability when the classifier's is.

    Shapes:
        logits: (N, K); output: (N,) float64.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits)}")
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"logits must have shape (N, K) with K >= 2, got "
            f"{tuple(logits.shape)}"
        )
    k = check_int("k", k, low=0, high=logits.shape[1] - 1)
    z = logits.detach().double().cpu()
    rest = torch.cat([z[:, :k], z[:, k + 1 :]], dim=1)  # (N, K - 1)
    return (z[:, k] - torch.logsumexp(rest, dim=1)).numpy()


def sigmoid(z: Any) -> np.ndarray:
    """σ(z) = 1 / (1 + exp(−z)) for a NumPy array, without overflow."""
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


# --- the confusion matrix and the metrics read from it --------------------


def confusion_matrix(y_true: Any, y_pred: Any) -> np.ndarray:
    """The 2 × 2 confusion matrix [[TN, FP], [FN, TP]].

    Row i counts the examples whose true label is i, column j those
    predicted j, as in scikit-learn: C[i, j] = #{n : yₙ = i, ŷₙ = j}.

    Shapes:
        y_true, y_pred: (N,) labels in {0, 1}.
        output: (2, 2) int64.
    """
    y = _labels("y_true", y_true)
    yhat = _labels("y_pred", y_pred)
    check_same_length(y_true=y, y_pred=yhat)
    return np.bincount(2 * y + yhat, minlength=4).reshape(2, 2)


class PRF(NamedTuple):
    """Precision, recall and F-beta of the positive class."""

    precision: float
    recall: float
    fbeta: float


def precision_recall_fbeta(y_true: Any, y_pred: Any, beta: float = 1.0) -> PRF:
    """Precision TP/(TP+FP), recall TP/(TP+FN) and their F-beta score.

        F_β = (1 + β²) P R / (β² P + R),

    the weighted harmonic mean that counts recall β times as much as
    precision; β = 1 gives F1. A ratio with a zero denominator is 0, as
    scikit-learn's zero_division=0 makes it.
    """
    beta = check_number("beta", beta, low=0, low_open=True)
    (_, fp), (fn, tp) = confusion_matrix(y_true, y_pred)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    b2 = beta**2
    f = (1 + b2) * p * r / (b2 * p + r) if p + r else 0.0
    return PRF(float(p), float(r), float(f))


# --- curves over all thresholds -------------------------------------------


def counts_at_thresholds(y_true: Any, y_score: Any):
    """FP and TP counts when every distinct score is used as a threshold.

    Sort the scores in decreasing order; predicting positive for score ≥ t
    at the k-th largest distinct score t gives cumulative counts. Tied
    scores are one threshold, so they enter the curve together.

    Returns:
        fps, tps, thresholds: (K,) each, for the K distinct scores, in
        decreasing order of threshold.
    """
    y, s = _pair(y_true, y_score)
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    # the last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = 1.0 + last - tps
    return fps, tps, s[last]


def roc_curve(y_true: Any, y_score: Any, drop_intermediate: bool = True):
    """The ROC curve: true-positive rate against false-positive rate.

        FPR(t) = FP(t) / N₋,  TPR(t) = TP(t) / N₊,

    one point per distinct score, starting at (0, 0) with threshold +∞.
    drop_intermediate drops points collinear with their neighbours, as
    scikit-learn does; they do not change the curve or its area.

    Shapes:
        y_true: (N,) labels in {0, 1}, both present; y_score: (N,).
        output: fpr, tpr, thresholds, (K + 1,) each.
    """
    y, _ = _pair(y_true, y_score)
    _both_classes(y, "a ROC curve")
    fps, tps, thr = counts_at_thresholds(y_true, y_score)
    if drop_intermediate and fps.size > 2:
        corner = np.diff(fps, 2).astype(bool) | np.diff(tps, 2).astype(bool)
        keep = np.r_[True, corner, True]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thr]


def roc_auc(y_true: Any, y_score: Any) -> float:
    """The area under the ROC curve by the trapezoidal rule.

    It equals P(s₊ > s₋) + ½ P(s₊ = s₋) for a random positive and a random
    negative: the Mann-Whitney statistic, ties counted half.
    """
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(y_true: Any, y_score: Any):
    """Precision and recall at every distinct score, as in scikit-learn.

    Recall decreases along the output; a last point (recall 0, precision 1)
    has no threshold. Precision is 0 where nothing is predicted positive.

    Shapes:
        output: precision, recall (K + 1,); thresholds (K,), increasing.
    """
    y, _ = _pair(y_true, y_score)
    if y.max() == 0:
        raise ValueError("y_true must contain a positive for a PR curve")
    fps, tps, thr = counts_at_thresholds(y_true, y_score)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return (
        np.r_[precision[::-1], 1.0],
        np.r_[recall[::-1], 0.0],
        thr[::-1],
    )


def average_precision(y_true: Any, y_score: Any) -> float:
    """Average precision: the step sum AP = Σₖ (Rₖ − Rₖ₋₁) Pₖ.

    Each rise of recall is weighted by the precision at that threshold,
    with no interpolation between points (interpolating a PR curve
    linearly is optimistic: Davis and Goadrich 2006).
    """
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


# --- calibration -----------------------------------------------------------


class Reliability(NamedTuple):
    """A reliability diagram: per equal-width bin of predicted probability."""

    confidence: (
        np.ndarray
    )  # (n_bins,) mean predicted probability, NaN if empty
    frequency: np.ndarray  # (n_bins,) fraction of positives, NaN if empty
    count: np.ndarray  # (n_bins,) examples in the bin
    ece: float  # the expected calibration error


def reliability(y_true: Any, y_prob: Any, n_bins: int = 10) -> Reliability:
    """Reliability diagram and expected calibration error (ECE).

    The bins B_b = [b/M, (b+1)/M) split [0, 1] into M equal parts, the last
    one closed at 1, as torchmetrics' BinaryCalibrationError does; then

        ECE = Σ_b |B_b| / N · |mean(y in B_b) − mean(p in B_b)|.

    Shapes:
        y_true: (N,) labels; y_prob: (N,) probabilities of the positive.
    """
    n_bins = check_int("n_bins", n_bins, low=1)
    y, p = _pair(y_true, y_prob, "y_prob")
    _probabilities("y_prob", p)
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    sum_p = np.bincount(b, weights=p, minlength=n_bins)
    sum_y = np.bincount(b, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence, frequency = sum_p / count, sum_y / count
    ece = np.abs(sum_y - sum_p).sum() / y.size
    return Reliability(confidence, frequency, count, float(ece))


def fit_temperature(logits: Any, y_true: Any) -> float:
    """The temperature T that minimises the NLL of σ(z / T) (Guo et al. 2017).

    One parameter fitted on held-out data: it rescales the logit z (the
    log-odds of the positive) without changing the ranking, so ROC and PR
    curves stay the same and only the probabilities move.
    """
    y, z = _pair(y_true, logits, "logits")

    def nll(log_t: float) -> float:
        a = z / np.exp(log_t)
        # −log σ(a) = log(1 + e^−a), computed stably with logaddexp
        return float(
            np.mean(np.logaddexp(0, -a) * y + np.logaddexp(0, a) * (1 - y))
        )

    res = minimize_scalar(nll, bounds=(-5, 5), method="bounded")
    return float(np.exp(res.x))


# --- decisions with costs --------------------------------------------------


def _costs(cost_fp: float, cost_fn: float) -> tuple[float, float]:
    return (
        check_number("cost_fp", cost_fp, low=0, low_open=True),
        check_number("cost_fn", cost_fn, low=0, low_open=True),
    )


def _rate(name: str, value: float) -> float:
    return check_number(
        name, value, low=0, high=1, low_open=True, high_open=True
    )


def bayes_threshold(cost_fp: float, cost_fn: float) -> float:
    """The threshold on a calibrated P(y = 1 | x) that minimises expected cost.

    Accuse when the expected cost of accusing, (1 − p) c_FP, is below that
    of letting go, p c_FN: p > t* = c_FP / (c_FP + c_FN).
    """
    cost_fp, cost_fn = _costs(cost_fp, cost_fn)
    return cost_fp / (cost_fp + cost_fn)


def shift_prior(
    prob: Any, base_rate: float, new_base_rate: float
) -> np.ndarray:
    """Probabilities calibrated at one base rate, moved to another.

    The likelihood ratio p(x | 1) / p(x | 0) does not depend on the base
    rate, so the posterior odds scale by the ratio of prior odds:

        odds′ = odds · [π′ / (1 − π′)] / [π / (1 − π)].
    """
    p = _probabilities("prob", prob)
    pi = _rate("base_rate", base_rate)
    pi_new = _rate("new_base_rate", new_base_rate)
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    shift = np.log(pi_new / (1 - pi_new)) - np.log(pi / (1 - pi))
    return 1 / (1 + np.exp(-(logit + shift)))


def expected_cost(
    fpr: Any, tpr: Any, base_rate: float, cost_fp: float, cost_fn: float
) -> np.ndarray:
    """The expected cost per case at an ROC point, for a given base rate π:

        E[cost] = c_FP (1 − π) FPR + c_FN π (1 − TPR).

    FPR and TPR are rates within each class, so the same ROC gives the
    cost at any base rate.
    """
    fpr, tpr = _scores("fpr", fpr), _scores("tpr", tpr)
    check_same_length(fpr=fpr, tpr=tpr)
    pi = _rate("base_rate", base_rate)
    cost_fp, cost_fn = _costs(cost_fp, cost_fn)
    return cost_fp * (1 - pi) * fpr + cost_fn * pi * (1 - tpr)


def iso_cost_slope(base_rate: float, cost_fp: float, cost_fn: float) -> float:
    """The slope dTPR/dFPR of the lines of equal expected cost on the ROC.

    Setting the differential of the expected cost to zero gives
    c_FP (1 − π) / (c_FN π); the best operating point is where such a line
    touches the ROC curve's upper hull.
    """
    pi = _rate("base_rate", base_rate)
    cost_fp, cost_fn = _costs(cost_fp, cost_fn)
    return cost_fp * (1 - pi) / (cost_fn * pi)


def positive_predictive_value(
    sensitivity: float, specificity: float, base_rate: float
) -> float:
    """P(guilty | accused) by Bayes' rule:

        PPV = s π / (s π + (1 − c)(1 − π)),

    with sensitivity s = TPR, specificity c = 1 − FPR and base rate π.
    """
    s = check_number("sensitivity", sensitivity, low=0, high=1)
    c = check_number("specificity", specificity, low=0, high=1)
    pi = _rate("base_rate", base_rate)
    accused = s * pi + (1 - c) * (1 - pi)
    if accused == 0:
        raise ValueError(
            "sensitivity and specificity give no positive predictions "
            f"(sensitivity={s}, specificity={c}): PPV is undefined"
        )
    return s * pi / accused


def subsample_positives(
    y_true: Any, base_rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Indices that keep every negative and enough positives for a base rate.

    The positives kept are a uniform random subset, so every class-
    conditional rate (TPR, FPR) is unchanged in expectation: only the
    base rate moves.
    """
    y = _labels("y_true", y_true)
    pi = _rate("base_rate", base_rate)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k = round(pi / (1 - pi) * neg.size)
    if not 1 <= k <= pos.size:
        raise ValueError(
            f"base_rate must be reachable by dropping positives: {base_rate} "
            f"needs {k} positives, y_true has {pos.size}"
        )
    return np.sort(np.r_[neg, rng.choice(pos, size=k, replace=False)])
