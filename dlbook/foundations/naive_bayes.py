"""Naive Bayes text classifiers with Laplace (additive) smoothing.

Two generative models of a document given its class, both "naive": the words
are conditionally independent given the class.

* Multinomial naive Bayes: a document is a bag of word counts drawn from a
  class-specific distribution over the vocabulary (McCallum and Nigam 1998);
* Bernoulli naive Bayes: a document is a binary vector saying which words of
  the vocabulary it contains, each an independent coin per class.

Both are fitted by counting, smoothed by adding α to every count (α = 1 is
Laplace's rule of succession, the posterior mean under a uniform Dirichlet
prior), and evaluated in log space on a sparse or dense count matrix. A small
``SpamFilter`` wraps tokenizing, counting and the multinomial model for the
SpamAssassin corpus, so that other chapters can reuse one spam classifier.

Checked against: scikit-learn's ``MultinomialNB`` and ``BernoulliNB`` (the
joint log-likelihoods and ``predict_log_proba`` agree to 1e-10), in
``tests/foundations/test_naive_bayes.py``.

Chapter: ``book/foundations/naive-bayes.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from dlbook.checks import (
    check_int,
    check_labels,
    check_nonempty,
    check_number,
    check_probability,
    check_same_length,
)

# --- input checks ------------------------------------------------------------


def _check_counts(name: str, X) -> sp.csr_matrix | np.ndarray:
    """A 2-D matrix of finite, non-negative counts (dense or SciPy sparse)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        values = X.data
    elif isinstance(X, np.ndarray):
        if not (
            np.issubdtype(X.dtype, np.integer)
            or np.issubdtype(X.dtype, np.floating)
        ):
            raise TypeError(
                f"{name} must hold numbers, got an array of dtype {X.dtype}"
            )
        X = X.astype(np.float64)
        values = X
    else:
        raise TypeError(
            f"{name} must be a NumPy array or a SciPy sparse matrix of "
            f"counts, got {type(X).__name__}"
        )
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D matrix (documents, words), got shape "
            f"{X.shape}"
        )
    check_nonempty(name, range(X.shape[0]))
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite, but it holds NaN or inf")
    if values.size and values.min() < 0:
        raise ValueError(
            f"{name} must hold non-negative counts, got a minimum of "
            f"{values.min():g}"
        )
    return X


def _check_y(y, num_classes: int) -> np.ndarray:
    y = np.asarray(y)
    check_labels("y", y, num_classes)
    return y.astype(np.int64)


# --- the models --------------------------------------------------------------


@dataclass
class NBConfig:
    """Hyperparameters of naive Bayes."""

    alpha: float = 1.0  # pseudo-count added to every word count (≥ 0)
    num_classes: int | None = None  # K; None: the largest label + 1


class _NaiveBayes:
    """What the two models share: class counts, the prior, the posterior.

    Subclasses define how word counts become log-probabilities
    (``_fit_words``) and the joint log-likelihood ``joint_log_likelihood``.
    """

    def __init__(self, config: NBConfig | None = None, **kwargs):
        config = (
            NBConfig(**kwargs) if config is None else replace(config, **kwargs)
        )
        self.alpha = check_number("alpha", config.alpha, low=0)
        self.num_classes = config.num_classes
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, low=2)
        self.class_log_prior_: np.ndarray | None = None
        self.feature_log_prob_: np.ndarray | None = None

    def fit(self, X, y) -> _NaiveBayes:
        """Count, smooth, take logs. Every class must have a document.

        Args:
            X: counts, (N, V), dense or SciPy sparse, non-negative.
            y: labels, (N,), integers in [0, K).
        """
        X = _check_counts("X", X)
        y = np.asarray(y)
        check_same_length(X=X, y=y)
        K = self.num_classes or 2
        if np.issubdtype(y.dtype, np.integer):  # K = largest label + 1
            K = self.num_classes or max(int(y.max()) + 1, 2)
        y = _check_y(y, K)
        Y = np.eye(K)[y]  # (N, K) one-hot
        class_count = Y.sum(0)  # (K,)
        if (class_count == 0).any():
            missing = np.flatnonzero(class_count == 0).tolist()
            raise ValueError(
                f"y must contain every class in [0, {K}), but classes "
                f"{missing} have no document"
            )
        self.num_classes_ = K
        self.n_features_ = X.shape[1]
        self.class_count_ = class_count
        # log π_c = log(N_c / N): the maximum-likelihood prior
        self.class_log_prior_ = np.log(class_count) - np.log(len(y))
        self._fit_words(X, Y)
        return self

    def _check_fitted(self, X):
        if self.feature_log_prob_ is None:
            raise RuntimeError("call fit before using the model")
        X = _check_counts("X", X)
        if X.shape[1] != self.n_features_:
            raise ValueError(
                f"X must have {self.n_features_} columns (the fitted "
                f"vocabulary), got {X.shape[1]}"
            )
        return X

    def predict_log_proba(self, X) -> np.ndarray:
        """log p(c | x) = jll_c − log Σ_k exp(jll_k), shape (N, K).

        A row is NaN where every class has probability zero (a word never
        seen in any class, with α = 0): the posterior is then 0 / 0.
        """
        jll = self.joint_log_likelihood(X)
        with np.errstate(invalid="ignore"):
            return jll - logsumexp(jll, axis=1, keepdims=True)

    def predict_proba(self, X) -> np.ndarray:
        """p(c | x), shape (N, K); rows sum to 1."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X) -> np.ndarray:
        """The class with the largest joint log-likelihood, shape (N,).

        Ties go to the lowest class, as in NumPy's argmax: with α = 0 that
        includes a document that every class vetoes (see predict_log_proba).
        """
        return np.argmax(self.joint_log_likelihood(X), axis=1)

    def score(self, X, y) -> float:
        """Accuracy on (X, y); y must hold labels of the fitted classes."""
        X = self._check_fitted(X)
        y = np.asarray(y)
        check_same_length(X=X, y=y)
        y = _check_y(y, self.num_classes_)
        return float(np.mean(self.predict(X) == y))


def _log(p: np.ndarray) -> np.ndarray:
    """log p, with log 0 = −inf and no warning (α = 0 makes zeros)."""
    with np.errstate(divide="ignore"):
        return np.log(p)


def _matmul_log(X, log_p: np.ndarray) -> np.ndarray:
    """X @ log_pᵀ with 0 · (−inf) = 0: a word absent from x costs nothing."""
    finite = np.where(np.isinf(log_p), 0.0, log_p)
    out = np.asarray(X @ finite.T)  # (N, K)
    if np.isinf(log_p).any():
        present = (X > 0).astype(np.float64)
        hits = np.asarray(present @ np.isinf(log_p).T.astype(np.float64))
        out = np.where(hits > 0, -np.inf, out)
    return out


class MultinomialNaiveBayes(_NaiveBayes):
    """Multinomial naive Bayes: words drawn one by one from θ_c.

    With N_cj the count of word j in the training documents of class c and
    V the vocabulary size, the smoothed word probabilities and the joint
    log-likelihood of a document x of word counts are

        θ_cj = (N_cj + α) / (Σ_j' N_cj' + α V),
        log p(x, c) = log π_c + Σ_j x_j log θ_cj   (+ a term free of c).

    Args:
        config: an ``NBConfig``, or its fields as keyword arguments.

    Shapes:
        X: (N, V) counts; y: (N,); feature_log_prob_: (K, V).
    """

    def _fit_words(self, X, Y):
        word_count = np.asarray((X.T @ Y).T)  # (K, V): N_cj
        smoothed = word_count + self.alpha
        self.feature_count_ = word_count
        self.feature_log_prob_ = _log(smoothed) - _log(
            smoothed.sum(1, keepdims=True)
        )

    def joint_log_likelihood(self, X) -> np.ndarray:
        """log π_c + Σ_j x_j log θ_cj for every document and class, (N, K)."""
        X = self._check_fitted(X)
        return _matmul_log(X, self.feature_log_prob_) + self.class_log_prior_


class BernoulliNaiveBayes(_NaiveBayes):
    """Bernoulli naive Bayes: one coin per vocabulary word and class.

    With b_j = 1 if word j occurs in the document (any count > 0) and
    D_cj the number of training documents of class c that contain it,

        θ_cj = (D_cj + α) / (N_c + 2α),
        log p(b, c) = log π_c + Σ_j [b_j log θ_cj + (1 − b_j) log(1 − θ_cj)].

    Absent words count too: that is the difference from the multinomial.

    Args:
        config: an ``NBConfig``, or its fields as keyword arguments.

    Shapes:
        X: (N, V) counts, binarized at > 0; y: (N,); feature_log_prob_: (K, V).
    """

    def _fit_words(self, X, Y):
        B = X > 0 if not sp.issparse(X) else (X > 0).astype(np.float64)
        doc_count = np.asarray((B.T @ Y).T, dtype=np.float64)  # (K, V): D_cj
        self.feature_count_ = doc_count
        denominator = self.class_count_[:, None] + 2 * self.alpha
        self.feature_log_prob_ = _log(doc_count + self.alpha) - _log(
            denominator
        )

    def joint_log_likelihood(self, X) -> np.ndarray:
        """log π_c + Σ_j log p(b_j | c) for each document and class, (N, K)."""
        X = self._check_fitted(X)
        B = (X > 0).astype(np.float64)
        with np.errstate(divide="ignore"):
            log_not = np.log1p(-np.exp(self.feature_log_prob_))  # log(1 − θ)
        log_p = self.feature_log_prob_
        if not (np.isinf(log_p).any() or np.isinf(log_not).any()):
            # b log θ + (1 − b) log(1 − θ)
            #     = b (log θ − log(1 − θ)) + log(1 − θ), as scikit-learn
            jll = np.asarray(B @ (log_p - log_not).T) + log_not.sum(1)
        else:  # α = 0: keep 0 · (−inf) = 0 for words that do not apply
            dense = B.toarray() if sp.issparse(B) else B
            jll = _matmul_log(dense, log_p) + _matmul_log(1 - dense, log_not)
        return jll + self.class_log_prior_


# --- the spam filter used by later chapters ----------------------------------

_SUBJECT = re.compile(r"^Subject:(.*)$", flags=re.MULTILINE | re.IGNORECASE)


def message_text(raw: str) -> str:
    """The subject line and body of a raw e-mail; the other headers dropped.

    The headers of the SpamAssassin corpus name the mailing lists its ham
    came through, which would let a classifier recognise the folder rather
    than the message: we keep what a reader of the mail sees.
    """
    head, _, body = raw.partition("\n\n")
    match = _SUBJECT.search(head)
    return (match.group(1).strip() if match else "") + "\n" + body


def split_spam_corpus(
    folders: Sequence[str], test_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of the corpus, stratified by folder: (train, test).

    Every folder (easy ham, hard ham, the two spam folders) is split in the
    same proportion, so the held-out part has as much hard ham as it should.
    Returns two sorted index arrays.
    """
    from sklearn.model_selection import train_test_split

    check_nonempty("folders", folders)
    check_probability(
        "test_fraction", test_fraction, allow_zero=False, allow_one=False
    )
    check_int("seed", seed, low=0)
    index = np.arange(len(folders))
    train, test = train_test_split(
        index,
        test_size=test_fraction,
        random_state=seed,
        stratify=np.asarray(folders),
    )
    return np.sort(train), np.sort(test)


@dataclass
class SpamFilterConfig:
    """Settings of :class:`SpamFilter`."""

    alpha: float = 1.0  # Laplace smoothing of the multinomial model
    min_df: int = 2  # keep words that occur in at least this many e-mails
    strip_headers: bool = True  # classify subject + body (message_text)


@dataclass
class SpamFilter:
    """A multinomial naive Bayes spam filter on raw e-mail texts.

    ``fit(texts, labels)`` builds the vocabulary with scikit-learn's
    ``CountVectorizer`` and our tokenizer (``dlbook.data.tokenize``), counts
    the words and fits :class:`MultinomialNaiveBayes`; ``predict_proba(texts)``
    returns p(spam | text) for each text, an array of shape (N,).

        spam = SpamFilter().fit(train_texts, train_labels)
        p = spam.predict_proba(test_texts)       # (N,) in [0, 1]
        flagged = spam.predict(test_texts, 0.9)  # 1 where p ≥ 0.9

    After ``fit``, ``spam.model`` is the fitted multinomial model,
    ``spam.vectorizer`` the vocabulary and ``spam.train_counts_`` the
    training count matrix.

    Args:
        config: a ``SpamFilterConfig``.
    """

    config: SpamFilterConfig = field(default_factory=SpamFilterConfig)

    def __post_init__(self):
        check_number("alpha", self.config.alpha, low=0)
        check_int("min_df", self.config.min_df, low=1)
        self.vectorizer = None
        self.model = MultinomialNaiveBayes(
            alpha=self.config.alpha, num_classes=2
        )

    def _texts(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError(
                "texts must be a sequence of strings, got one string"
            )
        check_nonempty("texts", texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(
                    f"texts[{i}] must be a string, got {type(t).__name__}"
                )
        if self.config.strip_headers:
            return [message_text(t) for t in texts]
        return list(texts)

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The (N, V) word-count matrix of texts over the fitted vocabulary."""
        if self.vectorizer is None:
            raise RuntimeError("call fit before using the spam filter")
        return self.vectorizer.transform(self._texts(texts))

    def fit(self, texts: Sequence[str], labels) -> SpamFilter:
        """Fit on raw e-mails; labels are 1 for spam and 0 for ham."""
        from sklearn.feature_extraction.text import CountVectorizer

        from dlbook.data import tokenize

        texts = self._texts(texts)
        labels = np.asarray(labels)
        check_same_length(texts=texts, labels=labels)
        check_labels("labels", labels, 2)
        self.vectorizer = CountVectorizer(
            tokenizer=tokenize,
            lowercase=False,  # tokenize lower-cases
            token_pattern=None,
            min_df=self.config.min_df,
        )
        X = self.vectorizer.fit_transform(texts)
        self.model.fit(X, labels)
        self.train_counts_ = X  # (N, V), kept so it need not be rebuilt
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """p(spam | text) for each text, shape (N,)."""
        return self.model.predict_proba(self.counts(texts))[:, 1]

    def predict(
        self, texts: Sequence[str], threshold: float = 0.5
    ) -> np.ndarray:
        """1 (spam) where p(spam | text) ≥ threshold, else 0; shape (N,)."""
        check_probability("threshold", threshold)
        return (self.predict_proba(texts) >= threshold).astype(np.int64)
