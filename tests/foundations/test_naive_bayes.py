"""Naive Bayes from scratch against scikit-learn, and what it refuses."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.naive_bayes import BernoulliNB, MultinomialNB

from dlbook.foundations.naive_bayes import (
    BernoulliNaiveBayes,
    MultinomialNaiveBayes,
    NBConfig,
    SpamFilter,
    SpamFilterConfig,
    message_text,
    split_spam_corpus,
)

MODELS = [
    (MultinomialNaiveBayes, MultinomialNB),
    (BernoulliNaiveBayes, BernoulliNB),
]


def _data(seed, n=40, v=30, k=3, density=0.3):
    rng = np.random.default_rng(seed)
    X = rng.poisson(1.0, (n, v)) * (rng.random((n, v)) < density)
    y = np.arange(n) % k
    rng.shuffle(y)
    return X, y


@pytest.mark.parametrize("ours, theirs", MODELS)
@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_equals_sklearn(ours, theirs, alpha, sparse):
    X, y = _data(0)
    X_test, _ = _data(1, n=25)
    if sparse:
        X, X_test = sp.csr_matrix(X), sp.csr_matrix(X_test)
    a = ours(alpha=alpha).fit(X, y)
    b = theirs(alpha=alpha).fit(X, y)
    np.testing.assert_allclose(
        a.feature_log_prob_, b.feature_log_prob_, rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        a.joint_log_likelihood(X_test),
        # sklearn binarizes in predict*, not in _joint_log_likelihood
        b._joint_log_likelihood(b._check_X(X_test)),
        rtol=0,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        a.predict_log_proba(X_test),
        b.predict_log_proba(X_test),
        rtol=0,
        atol=1e-10,
    )
    np.testing.assert_array_equal(a.predict(X_test), b.predict(X_test))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    alpha=st.floats(1e-3, 10.0),
    k=st.integers(2, 4),
    kind=st.sampled_from([0, 1]),
)
def test_equals_sklearn_property(seed, alpha, k, kind):
    ours, theirs = MODELS[kind]
    X, y = _data(seed, n=12, v=9, k=k, density=0.5)
    a = ours(alpha=alpha).fit(X, y)
    b = theirs(alpha=alpha).fit(X, y)
    np.testing.assert_allclose(
        a.predict_log_proba(X), b.predict_log_proba(X), rtol=0, atol=1e-10
    )


def test_zero_count_without_smoothing():
    # word 2 occurs only in class 1: with α = 0 a class-0 document that
    # contains it gets probability exactly 0 of class 0
    X = np.array([[3, 1, 0], [2, 2, 0], [0, 1, 4], [1, 0, 2]])
    y = np.array([0, 0, 1, 1])
    nb = MultinomialNaiveBayes(alpha=0.0).fit(X, y)
    doc = np.array([[5, 0, 1]])
    assert nb.joint_log_likelihood(doc)[0, 0] == -np.inf
    assert nb.predict_proba(doc)[0, 0] == 0.0
    # a word that no class has seen: the posterior is 0 / 0
    nb3 = MultinomialNaiveBayes(alpha=0.0).fit(
        np.c_[X, np.zeros(4, int)], y
    )
    assert np.isnan(nb3.predict_proba(np.array([[1, 0, 0, 1]]))).all()
    # Laplace smoothing: finite, and the hand-computed value
    lap = MultinomialNaiveBayes(alpha=1.0).fit(X, y)
    theta0 = np.array([5 + 1, 3 + 1, 0 + 1]) / (8 + 3)
    np.testing.assert_allclose(np.exp(lap.feature_log_prob_[0]), theta0)
    assert np.isfinite(lap.predict_log_proba(doc)).all()


def test_bernoulli_zero_count_without_smoothing():
    X = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])
    y = np.array([0, 0, 1, 1])
    nb = BernoulliNaiveBayes(alpha=0.0).fit(X, y)
    # word 0 is in every class-0 document and in no class-1 document
    p = nb.predict_proba(np.array([[1, 0, 0], [0, 0, 1]]))
    np.testing.assert_array_equal(p, [[1.0, 0.0], [0.0, 1.0]])


def test_learns_a_separable_toy_problem():
    rng = np.random.default_rng(0)
    theta = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.1, 0.3, 0.5]])
    y = rng.integers(0, 2, 400)
    X = np.stack([rng.multinomial(20, theta[c]) for c in y])
    nb = MultinomialNaiveBayes().fit(X[:200], y[:200])
    assert nb.score(X[200:], y[200:]) > 0.95
    # about 2,000 words per class: the standard error of θ is ≈ 0.011
    np.testing.assert_allclose(
        np.exp(nb.feature_log_prob_), theta, atol=0.05
    )


def test_config_and_num_classes():
    X, y = _data(0, k=2)
    nb = MultinomialNaiveBayes(NBConfig(alpha=0.5))
    assert nb.alpha == 0.5
    with pytest.raises(ValueError, match=r"classes \[2\] have no document"):
        MultinomialNaiveBayes(num_classes=3).fit(X, y)


@pytest.mark.parametrize("cls", [MultinomialNaiveBayes, BernoulliNaiveBayes])
def test_refuses_bad_input(cls):
    X, y = _data(0, k=2)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        cls(alpha=-0.5)
    with pytest.raises(ValueError, match="alpha"):
        cls(alpha=float("nan"))
    with pytest.raises(ValueError, match="X must hold non-negative counts"):
        cls().fit(X - 1, y)
    with pytest.raises(ValueError, match="X must hold non-negative counts"):
        cls().fit(sp.csr_matrix(X - 1.0 * (X > 0)) - sp.eye(40, 30), y)
    with pytest.raises(ValueError, match="X must be finite"):
        cls().fit(np.where(X > 0, np.inf, 0.0), y)
    with pytest.raises(ValueError, match="X and y must have the same length"):
        cls().fit(X, y[:-1])
    with pytest.raises(ValueError, match="y must hold labels"):
        cls().fit(X, np.where(y == 0, -1, y))
    with pytest.raises(TypeError, match="integer class labels"):
        cls().fit(X, y.astype(float))
    with pytest.raises(ValueError, match="2-D matrix"):
        cls().fit(X[0], y[:1])
    with pytest.raises(ValueError, match="X must not be empty"):
        cls().fit(np.zeros((0, 3)), np.zeros(0, int))
    nb = cls().fit(X, y)
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 2\)"):
        nb.score(X, np.where(y == 1, 2, 0))
    with pytest.raises(ValueError, match="X must have 30 columns"):
        nb.predict(X[:, :5])
    with pytest.raises(RuntimeError, match="call fit"):
        cls().predict(X)


def test_message_text_keeps_subject_and_body():
    raw = "From: a@b\nSubject: Win money\nX-List: ham\n\nHello there\n\nBye"
    assert message_text(raw) == "Win money\nHello there\n\nBye"
    assert message_text("all headers, no body") == "\n"


def test_split_is_seeded_and_stratified():
    folders = ["a"] * 70 + ["b"] * 30
    train, test = split_spam_corpus(folders, 0.3, seed=1)
    again = split_spam_corpus(folders, 0.3, seed=1)
    np.testing.assert_array_equal(test, again[1])
    assert len(test) == 30 and len(set(train) | set(test)) == 100
    assert sum(folders[i] == "b" for i in test) == 9
    with pytest.raises(ValueError, match="test_fraction"):
        split_spam_corpus(folders, 1.0)


SPAM = [
    "Subject: cheap pills\n\nbuy cheap pills now, free offer, click",
    "Subject: free money\n\nclick now for free money offer",
    "Subject: offer\n\ncheap offer click here buy now",
]
HAM = [
    "Subject: meeting\n\nthe meeting is moved to tuesday, see the agenda",
    "Subject: agenda\n\nplease review the agenda before the meeting",
    "Subject: lunch\n\nlunch on tuesday after the review meeting",
]


def test_spam_filter_learns_and_refuses():
    spam = SpamFilter(SpamFilterConfig(min_df=1))
    spam.fit(SPAM + HAM, [1, 1, 1, 0, 0, 0])
    p = spam.predict_proba(
        ["Subject: x\n\nfree pills offer", "Subject: y\n\nagenda meeting"]
    )
    assert p.shape == (2,) and p[0] > 0.9 and p[1] < 0.1
    np.testing.assert_array_equal(
        spam.predict(["Subject: x\n\nclick buy"]), [1]
    )
    with pytest.raises(ValueError, match=r"labels must hold labels in \[0, 2\)"):
        SpamFilter().fit(SPAM + HAM, [1, 1, 2, 0, 0, 0])
    with pytest.raises(ValueError, match="texts and labels must have"):
        SpamFilter().fit(SPAM + HAM, [1, 0])
    with pytest.raises(TypeError, match="one string"):
        spam.predict_proba("free pills")
    with pytest.raises(ValueError, match="threshold"):
        spam.predict(SPAM, threshold=1.5)
    with pytest.raises(ValueError, match="alpha"):
        SpamFilter(SpamFilterConfig(alpha=-1))
    with pytest.raises(RuntimeError, match="call fit"):
        SpamFilter().predict_proba(SPAM)
