"""Learning representations: embeddings in which distance means similarity.

* :mod:`dlbook.representations.siamese`: twin networks with shared weights,
  the contrastive and triplet losses, batch-hard and semi-hard mining, and
  one-shot recognition of Omniglot characters against the Modified
  Hausdorff Distance baseline, checked against PyTorch and
  pytorch-metric-learning.
* :mod:`dlbook.representations.word2vec`: one-hot vectors, and skip-gram with
  negative sampling (word2vec) from scratch: subsampling, the dynamic window,
  the unigram^0.75 noise distribution, the loss and its hand-derived
  gradient, vectorized SGD, nearest neighbours and the analogy test; checked
  against gensim's ``Word2Vec``.

Tests: ``tests/representations``. Chapters: ``book/representations/``.
"""
