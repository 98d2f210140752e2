"""Optimization: optimizers, learning rates, initialization and depth.

One module per chapter of the book's "Optimization" part:

* ``dlbook.optimization.optimizers``: SGD, momentum, Nesterov, RMSprop,
  Adam, AdamW (``book/optimization/optimizers.md``);
* ``dlbook.optimization.learning_rate``: schedules and the learning-rate
  range test (``book/optimization/learning-rate.md``);
* ``dlbook.optimization.initialization``: Xavier and He initialization,
  per-layer signal statistics, deep MLPs with and without normalization and
  residual connections (``book/optimization/initialization.md``).
"""
