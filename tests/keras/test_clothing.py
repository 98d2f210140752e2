"""dlbook.keras.clothing: the frozen Xception's features and their cache,
the course's head, sweeps with checkpoints and TensorBoard logs read back,
augmentation, and bad input."""

from dataclasses import replace
import numpy as np
import pytest

from dlbook.config import seed_everything
from dlbook.keras.clothing import (
    CLASSES,
    MIN_SIZE,
    N_FEATURES,
    STEPS,
    FeatureCache,
    FeatureExtractor,
    HeadConfig,
    augmented_views,
    build_head,
    keras,
    load_photos,
    photo_paths,
    pretrained_backbone,
    read_scalars,
    sweep,
    train_head,
)


@pytest.fixture(scope="module")
def random_extractor():
    seed_everything(0, tensorflow=True)
    return FeatureExtractor()  # random initial weights: cheap to build


def _photos(n=4, size=MIN_SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _separable(n_per_class, n_features=32, seed=0, spread=0.5):
    """Features of 10 classes around distinct means (a head must learn it)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(10, n_features))
    y = np.repeat(np.arange(10), n_per_class)
    f = means[y] + spread * rng.normal(size=(len(y), n_features))
    return f.astype(np.float32), y


# --- the photos --------------------------------------------------------------


def test_the_photo_list_matches_the_splits_and_classes():
    paths, targets = photo_paths("validation")
    assert len(paths) == len(targets) == 341
    assert np.bincount(targets).tolist()[:3] == [32, 14, 49]  # dress, hat...
    assert all(
        p.parent.name == CLASSES[t]
        for p, t in zip(paths, targets, strict=True)
    )


def test_load_photos_squeezes_each_photo_to_the_size_asked_for():
    x, y = load_photos("test", 80, per_class=2, seed=1)
    assert x.shape == (20, 80, 80, 3) and x.dtype == np.uint8
    assert y.tolist() == [c for c in range(10) for _ in range(2)]
    assert x.std() > 20  # photos, not blank arrays
    x2, y2 = load_photos("test", 80, per_class=2, seed=1)
    np.testing.assert_array_equal(x, x2)


# --- the feature cache -------------------------------------------------------


def test_the_extractor_gives_2048_features_at_any_size_from_71(
    random_extractor,
):
    for size in (MIN_SIZE, 96):
        f = random_extractor(_photos(3, size), batch_size=2)
        assert f.shape == (3, N_FEATURES) and f.dtype == np.float32
        assert np.isfinite(f).all()


def test_the_cache_runs_the_backbone_once_per_key(random_extractor):
    cache = FeatureCache(random_extractor, batch_size=3)
    x = _photos(5)
    first = cache("train", x)
    again = cache("train", None)  # a known key needs no images
    assert again is first and cache.computed == 5
    other = cache("other", _photos(2, seed=1))
    assert cache.computed == 7 and other.shape == (2, N_FEATURES)
    # batching does not change the features
    np.testing.assert_allclose(
        first, random_extractor(x, batch_size=5), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(KeyError, match="no features cached under 'test'"):
        cache("test", None)


def test_loading_weights_changes_the_features_and_is_checked(
    random_extractor,
):
    x = _photos(2)
    before = random_extractor(x)
    saved = random_extractor.backbone.get_weights()
    try:
        other = [w * 0.5 for w in saved]
        random_extractor.load(other)
        np.testing.assert_array_equal(
            random_extractor.backbone.get_weights()[3], other[3]
        )
        changed = np.abs(random_extractor(x) - before).max()
        assert changed > 0.1 * np.abs(before).max()
        with pytest.raises(ValueError, match="must hold Xception's"):
            random_extractor.load(saved[:-1])
        with pytest.raises(ValueError, match="must have shape"):
            random_extractor.load([w.T for w in saved])
    finally:
        random_extractor.load(saved)
    np.testing.assert_array_equal(random_extractor(x), before)


def test_the_copied_weights_compute_what_the_packages_xception_computes():
    reference = pretrained_backbone()  # 150 x 150 inputs, hash-checked
    ours = FeatureExtractor(reference)
    x = load_photos("validation", 150, per_class=1)[0][:4]
    want = np.asarray(reference(x / 127.5 - 1.0)).mean(axis=(1, 2))
    got = ours(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # the check can fail: the random network computes something else
    assert np.abs(FeatureExtractor()(x) - want).max() > 0.1


# --- the head ----------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, layers, params",
    [
        (HeadConfig(), ["logits"], 2048 * 10 + 10),
        (
            HeadConfig(inner=100, dropout=0.2),
            ["inner", "dropout", "logits"],
            2048 * 100 + 100 + 100 * 10 + 10,
        ),
        (HeadConfig(dropout=0.5, num_classes=3), ["dropout", "logits"], 6147),
    ],
)
def test_the_head_has_the_courses_layers_and_parameters(cfg, layers, params):
    model = build_head(cfg)
    assert [layer.name for layer in model.layers[1:]] == layers
    assert model.count_params() == params
    f = np.random.default_rng(0).normal(size=(4, N_FEATURES))
    logits = np.asarray(model(f.astype(np.float32)))
    assert logits.shape == (4, cfg.num_classes)
    # dropout is off at inference: two calls agree
    np.testing.assert_array_equal(logits, np.asarray(model(f)))
    lr = float(model.optimizer.learning_rate.numpy())
    assert lr == pytest.approx(cfg.learning_rate, rel=1e-6)


def test_a_head_learns_separable_features_and_repeats_itself():
    train, val = _separable(20), _separable(10, seed=0)
    cfg = HeadConfig(learning_rate=1e-2, inner=16, dropout=0.2)
    _, h1 = train_head(cfg, train, val, epochs=8, seed=3)
    _, h2 = train_head(cfg, train, val, epochs=8, seed=3)
    assert h1["val_accuracy"][-1] > 0.9, h1["val_accuracy"]
    assert h1["loss"][-1] < h1["loss"][0] / 2
    assert h1 == h2  # seeded: the same numbers twice
    # and the check can fail: shuffled labels are not learned
    rng = np.random.default_rng(1)
    noise = (train[0], rng.permutation(train[1]))
    _, h3 = train_head(cfg, noise, val, epochs=8, seed=3)
    assert h3["val_accuracy"][-1] < 0.5


def test_a_head_trained_in_the_shared_model_equals_one_trained_alone():
    """reuse=True trains inside one compiled model per architecture: the
    history, the weights and Adam's state must be those of the head trained
    on its own (dropout masks included), for every learning rate and seed."""
    train, val = (
        _separable(12, n_features=32),
        _separable(6, n_features=32, seed=0),
    )
    cfg = HeadConfig(learning_rate=1e-2, inner=8, dropout=0.5)
    runs = [(cfg, 3), (replace(cfg, learning_rate=3e-3), 4), (cfg, 3)]
    for c, seed in runs:
        m0, h0 = train_head(c, train, val, epochs=4, seed=seed, reuse=False)
        m1, h1 = train_head(c, train, val, epochs=4, seed=seed, reuse=True)
        assert h1 == h0, (c, seed)
        for a, b in zip(m0.variables, m1.variables, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(
            m0.optimizer.variables, m1.optimizer.variables, strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the returned heads are separate models: training one leaves the other
    m2, _ = train_head(cfg, train, val, epochs=1, seed=5)
    assert not np.array_equal(
        np.asarray(m2.variables[0]), np.asarray(m1.variables[0])
    )


def test_a_sweep_keeps_the_best_epoch_and_logs_what_fit_returned(tmp_path):
    train, val = (
        _separable(10, n_features=16, spread=2.0),
        _separable(5, n_features=16, seed=0, spread=2.0),
    )
    runs = sweep(
        "dropout",
        [0.0, 0.5],
        train,
        val,
        HeadConfig(learning_rate=3e-3, inner=8),
        epochs=6,
        log_dir=tmp_path / "logs",
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert list(runs) == [0.0, 0.5]
    for p, hist in runs.items():
        curves = read_scalars(tmp_path / "logs" / f"dropout={p}")
        steps, values = curves["validation"]
        assert steps.tolist() == list(range(6))
        np.testing.assert_allclose(values, hist["val_loss"], rtol=1e-6)
        np.testing.assert_allclose(curves["train"][1], hist["loss"], rtol=1e-6)
        acc = read_scalars(
            tmp_path / "logs" / f"dropout={p}", "epoch_accuracy"
        )
        np.testing.assert_allclose(acc["train"][1], hist["accuracy"])
        best = keras.models.load_model(
            tmp_path / "ckpt" / f"dropout={p}.keras"
        )
        _, saved_acc = best.evaluate(*val, verbose=0)
        assert saved_acc == pytest.approx(max(hist["val_accuracy"]), abs=1e-6)


def test_read_scalars_says_when_there_is_nothing_to_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorBoard events"):
        read_scalars(tmp_path)


# --- augmentation ------------------------------------------------------------


def test_augmented_views_are_new_photos_of_the_same_shape():
    x = load_photos("train", 72, per_class=1)[0]
    views = augmented_views(x, 2, seed=0)
    assert views.shape == (20, 72, 72, 3) and views.dtype == np.uint8
    assert np.abs(views[:10].astype(int) - x).mean() > 5  # changed
    assert np.abs(views[:10].astype(int) - views[10:]).mean() > 5  # random
    np.testing.assert_array_equal(views, augmented_views(x, 2, seed=0))


# --- bad input ---------------------------------------------------------------


def test_bad_arguments_are_named(random_extractor):
    train = _separable(2)
    with pytest.raises(ValueError, match="step must be one of"):
        sweep("batch_size", [8], train, train, HeadConfig(), 1)
    assert "learning_rate" in STEPS
    with pytest.raises(ValueError, match="values must name at least one"):
        sweep("dropout", [], train, train, HeadConfig(), 1)
    for lr in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="learning_rate must be"):
            HeadConfig(learning_rate=lr)
    for p in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="dropout must be"):
            HeadConfig(dropout=p)
    with pytest.raises(ValueError, match="inner must be"):
        HeadConfig(inner=-1)
    with pytest.raises(TypeError, match="inner must be an integer"):
        HeadConfig(inner=10.0)
    with pytest.raises(
        ValueError, match="image size must be an integer >= 71"
    ):
        random_extractor(_photos(1, 70))
    with pytest.raises(ValueError, match="square RGB photos"):
        random_extractor(np.zeros((1, 80, 90, 3), np.uint8))
    with pytest.raises(ValueError, match="size must be an integer >= 71"):
        load_photos("train", 64)
    with pytest.raises(ValueError, match="split must be one of"):
        load_photos("valid", 75)
    with pytest.raises(
        ValueError, match=r"train labels must lie in \[0, 10\)"
    ):
        train_head(HeadConfig(), (train[0], train[1] - 1), train, 1)
    with pytest.raises(ValueError, match="same length"):
        train_head(HeadConfig(), (train[0], train[1][:-1]), train, 1)
    with pytest.raises(ValueError, match="epochs must be"):
        train_head(HeadConfig(), train, train, 0)
    with pytest.raises(ValueError, match="views must be"):
        augmented_views(_photos(1), 0)
