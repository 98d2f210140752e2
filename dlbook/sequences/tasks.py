"""Sequence tasks with known answers, for the recurrent-network chapters.

Each function draws a dataset from a seeded ``torch.Generator`` so that a
chapter gets the same data twice. Generated tasks isolate one ability (hold a
value for T steps, read the future, sort) and make "how long a dependency can
this network learn?" a question with a number for an answer:

* ``adding_problem``: the sum of two marked values in a long sequence
  (Hochreiter & Schmidhuber 1997, experiment 4; the version of Le, Jaitly &
  Hinton 2015);
* ``copy_task``: recall k symbols after a delay (Hochreiter & Schmidhuber
  1997; Arjovsky, Shah & Bengio 2016);
* ``delay_stream``: a stream of bits to be repeated d steps later;
* ``pattern_task``: does a two-token pattern occur (many-to-one);
* ``sort_task``: digits in, the same digits sorted out (encoder-decoder);
* ``sine_task``: a frequency and phase in, the sine wave out (one-to-many);
* ``word_end_tags``: real text, each letter tagged if it ends a word.

Used by ``book/sequences/rnn.md`` and ``book/sequences/lstm.md``; tested in
``tests/sequences/test_tasks.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from dlbook.checks import check_int

IGNORE = -100  # the target of steps without a loss (PyTorch's ignore_index)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(check_int("seed", seed, low=0))


def adding_problem(
    n: int, length: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Two input channels: values uniform in [0, 1], and markers (two ones).

    One marker falls in the first half of the sequence and one in the second
    half; the target is the sum of the two marked values. Predicting 1
    always gives a mean squared error of 1/6 (the variance of the sum).

    Shapes:
        returns x (n, T, 2) float and y (n,) float.
    """
    check_int("n", n, low=1)
    check_int("length", length, low=2)
    g = _generator(seed)
    values = torch.rand(n, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=-1), y


def copy_task(
    n: int, delay: int, k: int = 3, symbols: int = 8, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Recall k symbols after ``delay`` blank steps.

    Input: k symbols from {0, ..., symbols − 1}, ``delay`` blanks (token
    ``symbols``), a go marker (``symbols + 1``) and k − 1 blanks. Target:
    the k symbols at the last k steps, ``IGNORE`` elsewhere. The first
    symbol must be held for k + delay steps. Chance accuracy: 1/symbols.

    Shapes:
        returns x (n, 2k + delay) and y (n, 2k + delay), both int64.
    """
    check_int("n", n, low=1)
    check_int("delay", delay, low=0)
    check_int("k", k, low=1)
    check_int("symbols", symbols, low=2)
    g = _generator(seed)
    data = torch.randint(0, symbols, (n, k), generator=g)
    blank, go = symbols, symbols + 1
    x = torch.full((n, 2 * k + delay), blank)
    x[:, :k] = data
    x[:, k + delay] = go
    y = torch.full_like(x, IGNORE)
    y[:, -k:] = data
    return x, y


def delay_stream(n: int, delay: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A stream of random bits and, as target, the same stream d steps late.

    y_t = x_{t−d}; the first d targets are ``IGNORE``.

    Shapes:
        returns x (n,) and y (n,), both int64.
    """
    check_int("delay", delay, low=0)
    check_int("n", n, low=delay + 1)
    x = torch.randint(0, 2, (n,), generator=_generator(seed))
    y = torch.full_like(x, IGNORE)
    y[delay:] = x[: n - delay]
    return x, y


def pattern_task(
    n: int,
    length: int,
    vocab: int = 10,
    pattern: tuple[int, int] = (3, 7),
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Random tokens; label 1 if ``pattern`` occurs as two adjacent tokens.

    Half of the sequences get the pattern at a random place; the others are
    redrawn until they do not contain it, so the classes are balanced.

    Shapes:
        returns x (n, T) and y (n,), both int64.
    """
    check_int("n", n, low=1)
    check_int("length", length, low=2)
    check_int("vocab", vocab, low=2)
    a, b = (check_int("pattern", p, low=0, high=vocab - 1) for p in pattern)
    g = _generator(seed)
    x = torch.randint(0, vocab, (n, length), generator=g)
    y = torch.zeros(n, dtype=torch.long)
    y[torch.randperm(n, generator=g)[: n // 2]] = 1

    def has(rows: Tensor) -> Tensor:
        return ((rows[:, :-1] == a) & (rows[:, 1:] == b)).any(1)

    bad = has(x) & (y == 0)
    while bad.any():  # negatives must not contain the pattern by chance
        x[bad] = torch.randint(0, vocab, (int(bad.sum()), length), generator=g)
        bad = has(x) & (y == 0)
    pos = torch.randint(0, length - 1, (n,), generator=g)
    rows = torch.nonzero(y == 1).flatten()
    x[rows, pos[rows]] = a
    x[rows, pos[rows] + 1] = b
    return x, y


def sort_task(
    n: int, length: int, digits: int = 10, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Digits in, the same digits in increasing order out, then EOS.

    Source tokens are 0..digits − 1; the target vocabulary adds BOS
    (``digits``) and EOS (``digits + 1``).

    Shapes:
        returns src (n, L) and tgt (n, L + 1), both int64.
    """
    check_int("n", n, low=1)
    check_int("length", length, low=1)
    check_int("digits", digits, low=2)
    src = torch.randint(0, digits, (n, length), generator=_generator(seed))
    eos = torch.full((n, 1), digits + 1)
    return src, torch.cat([src.sort(dim=1).values, eos], dim=1)


def sine_task(n: int, steps: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seed (frequency, phase) and the wave y_t = sin(ω t + φ), t = 0..T−1.

    ω is uniform in [0.1, 0.6] radians per step and φ in [0, 2π); the seed
    holds (ω, φ / 2π) so both entries lie in [0, 1].

    Shapes:
        returns seed (n, 2) and y (n, T, 1), both float.
    """
    check_int("n", n, low=1)
    check_int("steps", steps, low=1)
    g = _generator(seed)
    omega = 0.1 + 0.5 * torch.rand(n, generator=g)
    phase = torch.rand(n, generator=g)
    t = torch.arange(steps, dtype=torch.float32)
    y = torch.sin(omega[:, None] * t + 2 * torch.pi * phase[:, None])
    return torch.stack([omega, phase], dim=1), y[..., None]


def word_end_tags(text: str) -> Tensor:
    """1 where a letter is the last of its word (the next character is not a
    letter), else 0. Tagging a letter needs the character after it.

    Shapes:
        returns (len(text),) int64.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty string, got {text!r:.40}")
    letter = torch.tensor([c.isalpha() for c in text])
    after = torch.cat([letter[1:], torch.tensor([False])])
    return (letter & ~after).long()


class LengthCurriculum:
    """``steps`` batches of a generated task, each of its own length.

    Batch j has length L_j drawn log-uniformly from [low, high], so short
    problems, which give a learning signal early, are as frequent as long
    ones on a logarithmic scale. Within a batch all sequences share L_j.

    Args:
        task: ``task(n, length, seed) -> (x, y)``, e.g. ``adding_problem``.
        low, high: the range of lengths.
        batch_size, steps: sequences per batch, batches per pass.
        seed: the draw of lengths and data; the same seed, the same batches.
    """

    def __init__(
        self,
        task: Callable[..., tuple[Tensor, Tensor]],
        low: int,
        high: int,
        batch_size: int,
        steps: int,
        seed: int = 0,
    ):
        self.low = check_int("low", low, low=1)
        self.high = check_int("high", high, low=low)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.steps = check_int("steps", steps, low=1)
        self.task, self.seed = task, check_int("seed", seed, low=0)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = _generator(self.seed)
        a, b = math.log(self.low), math.log(self.high + 1)
        for j in range(self.steps):
            u = float(torch.rand((), generator=g))
            length = min(self.high, int(math.exp(a + u * (b - a))))
            yield self.task(
                self.batch_size, length, seed=self.seed * 10**6 + j
            )
