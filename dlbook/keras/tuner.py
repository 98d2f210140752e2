"""Hyperparameter search with Keras Tuner, against a hand-written random search.

* ``build_cnn``: the hypermodel of IUST P4, a small CNN on MNIST whose filters,
  kernel size, pooling, dropout and learning rate are hyperparameters. It takes
  a ``keras_tuner.HyperParameters`` (the tuners call it) or a
  :class:`RandomDraws` (our own random search calls it); both answer
  ``hp.Choice`` and ``hp.Float``.
* ``make_tuner``: ``RandomSearch``, ``Hyperband`` (Li et al. 2018) or
  ``BayesianOptimization`` (a Gaussian process, Snoek et al. 2012) from
  KerasTuner (O'Malley et al. 2019), seeded, under a budget of trials and
  epochs per trial.
* ``random_search``: random search written out by hand (Bergstra & Bengio
  2012), scored like KerasTuner scores a trial: the best validation accuracy
  over the trial's epochs.
* ``trials_frame`` and ``running_best``: the trials of a tuner in the order
  they ran, with the epochs each one trained, and the best score so far.

Tests: ``tests/keras/test_tuner.py``. Chapter: ``book/keras/keras-tuner.md``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlbook.backends import keras as _keras
from dlbook.checks import check_array, check_choice, check_int

keras = _keras()
L = keras.layers

TUNERS = ("random", "hyperband", "bayesian")
HYPERPARAMETERS = ("filters_1", "filters_2", "kernel", "pooling", "dropout",
                   "learning_rate")


def build_cnn(hp, input_shape=(28, 28, 1), classes: int = 10):
    """Two convolution blocks and a dense classifier, compiled.

    Each block is a ReLU convolution with "same" padding followed by 2 x 2
    pooling; dropout sits before the last dense layer. The search space:
    filters 4-16 then 8-32, kernel 3 or 5, max or average pooling, dropout 0
    to 0.5 in steps of 0.1, and a learning rate for Adam between 1e-4 and
    1e-2 on a log scale.
    """
    f1 = hp.Choice("filters_1", [4, 8, 16])
    f2 = hp.Choice("filters_2", [8, 16, 32])
    k = hp.Choice("kernel", [3, 5])
    pool = hp.Choice("pooling", ["max", "avg"])
    rate = hp.Float("dropout", 0.0, 0.5, step=0.1)
    lr = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    Pool = L.MaxPooling2D if pool == "max" else L.AveragePooling2D
    model = keras.Sequential([
        keras.Input(input_shape),
        L.Conv2D(f1, k, padding="same", activation="relu"),
        Pool(2),
        L.Conv2D(f2, k, padding="same", activation="relu"),
        Pool(2),
        L.Flatten(),
        L.Dropout(rate),
        L.Dense(classes),
    ])
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class RandomDraws:
    """Answers ``hp.Choice`` and ``hp.Float`` with random draws, as
    ``keras_tuner.HyperParameters`` does for a random search: a uniform choice;
    a uniform float on the grid of ``step``, or log-uniform with
    ``sampling="log"``. ``values`` records what was drawn."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.values: dict = {}

    def Choice(self, name: str, values):
        v = values[int(self.rng.integers(len(values)))]
        self.values[name] = v
        return v

    def Float(self, name: str, min_value: float, max_value: float,
              step: float | None = None, sampling: str = "linear"):
        check_choice("sampling", sampling, ("linear", "log"))
        if step is not None:
            n = int(round((max_value - min_value) / step)) + 1
            v = min_value + step * int(self.rng.integers(n))
        elif sampling == "log":
            lo, hi = math.log(min_value), math.log(max_value)
            v = math.exp(self.rng.uniform(lo, hi))
        else:
            v = self.rng.uniform(min_value, max_value)
        v = float(v)
        self.values[name] = v
        return v


def _check_data(x, y, name: str) -> None:
    check_array(f"{name} images", x, ndim=4)
    check_array(f"{name} labels", y, ndim=1)
    if len(x) != len(y):
        raise ValueError(
            f"{name} images and labels must have the same length, got "
            f"{len(x)} and {len(y)}")


def make_tuner(kind: str, *, trials: int, epochs: int, seed: int,
               directory: str | Path, build=build_cnn):
    """A seeded KerasTuner tuner maximizing validation accuracy.

    ``random`` and ``bayesian`` run ``trials`` trials of ``epochs`` epochs;
    ``bayesian`` starts from ``max(2, trials // 3)`` random points. Hyperband
    has no trial count: it runs brackets of successive halving (factor 2:
    the better half of the models continue for twice the epochs) up to
    ``epochs`` epochs per model; ``trials_frame`` counts what it trained.
    """
    import keras_tuner as kt

    check_choice("kind", kind, TUNERS)
    check_int("trials", trials, low=1)
    check_int("epochs", epochs, low=1)
    common = dict(objective="val_accuracy", seed=seed, overwrite=True,
                  directory=str(directory), project_name=kind)
    if kind == "random":
        return kt.RandomSearch(build, max_trials=trials, **common)
    if kind == "bayesian":
        return kt.BayesianOptimization(
            build, max_trials=trials, num_initial_points=max(2, trials // 3),
            **common)
    return kt.Hyperband(build, max_epochs=epochs, factor=2, **common)


@contextlib.contextmanager
def quiet_checkpoint_reload():
    """Silences one warning: Keras's "Skipping variable loading for optimizer".

    A tuner saves a trial's best epoch as a checkpoint with the optimizer's
    state, and reloads it into a freshly built model whose optimizer is not
    built yet (Hyperband when it promotes a model to more epochs; any tuner's
    ``get_best_models``). Keras then skips the optimizer state with a
    UserWarning: a promoted model restarts Adam's moments, and predictions
    need only the weights. Other warnings still show.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Skipping variable loading for optimizer",
            category=UserWarning)
        yield


def search(tuner, x, y, x_val, y_val, *, epochs: int, batch_size: int):
    """``tuner.search`` on the training data, scored on the validation data."""
    check_int("epochs", epochs, low=1)
    _check_data(x, y, "training")
    _check_data(x_val, y_val, "validation")
    with quiet_checkpoint_reload():
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=epochs,
                     batch_size=batch_size, verbose=0)


def best_model(tuner):
    """The best trial's model, reloaded from its checkpoint (the weights of
    the trial's best epoch)."""
    with quiet_checkpoint_reload():
        return tuner.get_best_models(1)[0]


def trials_frame(tuner, epochs: int) -> pd.DataFrame:
    """One row per finished trial, in the order the trials ran: its
    hyperparameters, the epochs it trained and its score, the best validation
    accuracy over its epochs. A trial of ``random`` or ``bayesian`` trains the
    ``epochs`` given to ``search``; Hyperband sets each trial's epochs itself
    and resumes a promoted model from ``tuner/initial_epoch``."""
    check_int("epochs", epochs, low=1)
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.score is None:
            continue
        hp = trial.hyperparameters.values
        if "tuner/epochs" in hp:
            trained = hp["tuner/epochs"] - hp["tuner/initial_epoch"]
        else:
            trained = epochs
        row = {k: hp[k] for k in HYPERPARAMETERS}
        row.update(epochs=trained, score=float(trial.score))
        rows.append(row)
    return pd.DataFrame(rows)


def running_best(scores) -> np.ndarray:
    """The best score among the first 1, 2, ... trials."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or len(scores) == 0:
        raise ValueError(
            f"scores must be a non-empty 1-D sequence, got shape "
            f"{scores.shape}")
    return np.maximum.accumulate(scores)


class KeepBest(keras.callbacks.Callback):
    """Restores, when training ends, the weights of the epoch with the best
    validation accuracy: the model a trial's score describes (KerasTuner
    keeps the same epoch's checkpoint)."""

    def on_train_begin(self, logs=None):
        self.best, self.weights = -np.inf, None

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_accuracy"] > self.best:
            self.best = logs["val_accuracy"]
            self.weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        self.model.set_weights(self.weights)


@dataclass
class SearchResult:
    """What :func:`random_search` found: one row per trial, and the best
    model, trained."""

    trials: pd.DataFrame
    best_model: object = field(repr=False)


def random_search(x, y, x_val, y_val, *, trials: int, epochs: int,
                  seed: int, batch_size: int = 64,
                  build=build_cnn) -> SearchResult:
    """Random search by hand: draw hyperparameters, train ``epochs`` epochs,
    score the best validation accuracy over the epochs; keep the best model
    (at its best epoch).
    """
    check_int("trials", trials, low=1)
    check_int("epochs", epochs, low=1)
    _check_data(x, y, "training")
    _check_data(x_val, y_val, "validation")
    rng = np.random.default_rng(seed)
    rows, best, best_score = [], None, -np.inf
    for _ in range(trials):
        hp = RandomDraws(rng)
        model = build(hp)
        history = model.fit(x, y, validation_data=(x_val, y_val),
                            epochs=epochs, batch_size=batch_size, verbose=0,
                            callbacks=[KeepBest()])
        score = float(max(history.history["val_accuracy"]))
        rows.append({**hp.values, "epochs": epochs, "score": score})
        if score > best_score:
            best, best_score = model, score
    return SearchResult(pd.DataFrame(rows), best)
