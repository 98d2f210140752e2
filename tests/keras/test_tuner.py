"""dlbook.keras.tuner: the hypermodel, the hand-written random search, the
tuners' trial tables, bad input."""

import numpy as np
import pytest

from dlbook.config import seed_everything
from dlbook.keras.tuner import (
    HYPERPARAMETERS,
    RandomDraws,
    best_model,
    build_cnn,
    make_tuner,
    random_search,
    running_best,
    search,
    trials_frame,
)


def _blobs(n, seed):
    """Two classes told apart by the mean brightness of the left half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.random((n, 12, 12, 1), dtype=np.float32) * 0.5
    x[y == 1, :, :6] += 1.0
    return x, y


def _build(hp):
    return build_cnn(hp, input_shape=(12, 12, 1), classes=2)


def _build_fast(hp):
    """A searched width with a fixed, large learning rate: learns the blobs
    in a few steps whatever is drawn."""
    from dlbook.keras.tuner import keras

    L = keras.layers
    model = keras.Sequential([
        keras.Input((12, 12, 1)),
        L.Conv2D(hp.Choice("filters_1", [2, 4]), 3, activation="relu"),
        L.GlobalAveragePooling2D(),
        L.Dense(2),
    ])
    model.compile(keras.optimizers.Adam(hp.Choice("learning_rate", [0.03])),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_random_draws_cover_the_space_and_respect_its_grid():
    hp = RandomDraws(np.random.default_rng(0))
    draws = []
    for _ in range(200):
        hp.values = {}
        build = hp.Choice("k", [3, 5]), hp.Float("d", 0.0, 0.5, step=0.1)
        draws.append((build, hp.Float("lr", 1e-4, 1e-2, sampling="log")))
    ks = {d[0][0] for d in draws}
    rates = {round(d[0][1], 10) for d in draws}
    lrs = np.array([d[1] for d in draws])
    assert ks == {3, 5}
    assert rates == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-2
    # log-uniform: about half the draws below the geometric middle 1e-3
    assert 0.35 < np.mean(lrs < 1e-3) < 0.65


def test_build_cnn_counts_its_parameters():
    hp = RandomDraws(np.random.default_rng(1))
    model = build_cnn(hp)
    v = hp.values
    assert set(v) == set(HYPERPARAMETERS)
    k, f1, f2 = v["kernel"], v["filters_1"], v["filters_2"]
    expected = f1 * (k * k + 1) + f2 * (f1 * k * k + 1) + 10 * (49 * f2 + 1)
    assert model.count_params() == expected


def test_random_search_learns_and_is_deterministic(tmp_path):
    x, y = _blobs(192, 0)
    xv, yv = _blobs(96, 1)
    runs = []
    for _ in range(2):
        seed_everything(0, tensorflow=True)
        runs.append(random_search(x, y, xv, yv, trials=2, epochs=3, seed=0,
                                  batch_size=16, build=_build_fast))
    a, b = runs
    assert a.trials.equals(b.trials)
    assert len(a.trials) == 2 and (a.trials["epochs"] == 3).all()
    # the kept model is the best trial at its best epoch
    acc = np.mean(np.argmax(a.best_model.predict(xv, verbose=0), 1) == yv)
    assert acc == pytest.approx(a.trials["score"].max(), abs=1e-6)
    assert acc > 0.9  # chance is 0.5


@pytest.mark.parametrize("kind", ["random", "hyperband", "bayesian"])
def test_tuners_trials_frame(tmp_path, kind):
    x, y = _blobs(128, 0)
    xv, yv = _blobs(64, 1)
    seed_everything(0, tensorflow=True)
    tuner = make_tuner(kind, trials=2, epochs=2, seed=0, directory=tmp_path,
                       build=_build)
    search(tuner, x, y, xv, yv, epochs=2, batch_size=64)
    frame = trials_frame(tuner, epochs=2)
    assert len(frame) >= 2 and list(frame.columns[:6]) == list(
        HYPERPARAMETERS)
    assert frame["epochs"].between(1, 2).all()
    # the best trial's score is the validation accuracy of the model it kept
    best = best_model(tuner)
    acc = np.mean(np.argmax(best.predict(xv, verbose=0), 1) == yv)
    assert acc == pytest.approx(frame["score"].max(), abs=1e-6)
    if kind != "hyperband":
        assert len(frame) == 2 and (frame["epochs"] == 2).all()


def test_running_best():
    assert running_best([0.2, 0.5, 0.4, 0.7]).tolist() == [0.2, 0.5, 0.5, 0.7]
    with pytest.raises(ValueError, match="scores must be a non-empty"):
        running_best([])


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        make_tuner("grid", trials=2, epochs=1, seed=0, directory=tmp_path)
    with pytest.raises(ValueError, match="trials"):
        make_tuner("random", trials=0, epochs=1, seed=0, directory=tmp_path)
    with pytest.raises(ValueError, match="epochs"):
        make_tuner("random", trials=1, epochs=0, seed=0, directory=tmp_path)
    x, y = _blobs(8, 0)
    with pytest.raises(ValueError, match="same length"):
        random_search(x, y[:4], x, y, trials=1, epochs=1, seed=0)
    with pytest.raises(ValueError, match="training images"):
        random_search(x[..., 0], y, x, y, trials=1, epochs=1, seed=0)
    with pytest.raises(ValueError, match="sampling"):
        RandomDraws(np.random.default_rng(0)).Float("a", 0, 1, sampling="x")
