"""Representations: word embeddings learned from text, and metric learning.

* :mod:`dlbook.representations.word2vec`: one-hot vectors, and skip-gram with
  negative sampling (word2vec) from scratch: subsampling, the dynamic window,
  the unigram^0.75 noise distribution, the loss and its hand-derived
  gradient, vectorized SGD, nearest neighbours and the analogy test; checked
  against gensim's ``Word2Vec``.

Chapters: ``book/representations/``.
"""
