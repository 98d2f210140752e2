"""Learning representations: embeddings in which distance means similarity.

* :mod:`dlbook.representations.siamese`: twin networks with shared weights,
  the contrastive and triplet losses, batch-hard and semi-hard mining, and
  one-shot recognition of Omniglot characters against the Modified
  Hausdorff Distance baseline, checked against PyTorch and
  pytorch-metric-learning.

Tests: ``tests/representations``. Chapter: ``book/representations/siamese.md``.
"""
