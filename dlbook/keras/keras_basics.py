"""Keras in three APIs: one CNN built three ways, trained, moved between
backends and between frameworks.

* ``build_lenet``: the LeNet of ``dlbook.convnets.cnn`` (LeCun et al. 1998,
  in its modern form) as a Keras 3 model (Chollet et al. 2015), written with
  the Sequential, the Functional or the subclassing API; ``copy_weights``
  moves weights between them, and ``summary_params`` reads the parameter
  column of ``model.summary()`` to check it against the convolution
  chapter's formula (``dlbook.convnets.convolution.layer_table``).
* ``make_dataset``: a ``tf.data`` input pipeline (Abadi et al. 2016; Murray
  et al. 2021, "tf.data: a machine learning data processing framework"),
  with or without ``cache`` and ``prefetch``; ``EpochTimer``, a custom
  callback.
* ``outputs_on_backend``: the same saved Keras model run by another Keras
  backend (TensorFlow or PyTorch) in a fresh process, since Keras reads
  ``KERAS_BACKEND`` once, when it is imported.
* ``torch_to_keras`` and ``keras_to_torch``: the weights of a PyTorch
  ``LeNet`` copied into its Keras twin and back, with the kernel layouts
  (NCHW against NHWC) and the flatten order handled.

Training uses Keras's own ``compile``/``fit``/``evaluate``, not
``dlbook.train.fit``: the Keras loop is what this chapter teaches. Tests:
``tests/keras/test_keras_basics.py`` (the three APIs against each other, the
weight transfer both ways against PyTorch's logits, the PyTorch backend,
bad input). Chapter: ``book/keras/keras-basics.md``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dlbook.backends import keras as _keras
from dlbook.backends import tensorflow as _tensorflow
from dlbook.checks import (
    check_array,
    check_choice,
    check_int,
    check_same_length,
)
from dlbook.convnets.cnn import LeNet, LeNetConfig
from dlbook.convnets.convolution import Conv, Dense, Flatten, Layer, Pool

tf = _tensorflow()
keras = _keras()
L = keras.layers

APIS = ("sequential", "functional", "subclassed")


# --- one CNN, three APIs -----------------------------------------------------


def lenet_layers(cfg: LeNetConfig | None = None) -> list[Layer]:
    """LeNet as the convolution chapter's layer table (for its formulas)."""
    cfg = cfg or LeNetConfig()
    _check_pooling(cfg)
    k = cfg.kernel_size
    pool = Pool(2, kind=cfg.pooling)
    return [
        Conv(cfg.channels[0], k, padding=k // 2),
        pool,
        Conv(cfg.channels[1], k),
        pool,
        Flatten(),
        Dense(cfg.hidden[0]),
        Dense(cfg.hidden[1]),
        Dense(cfg.num_classes),
    ]


def _check_pooling(cfg: LeNetConfig) -> None:
    if cfg.pooling not in ("max", "avg"):
        raise ValueError(
            "the Keras LeNet has pooling 'max' or 'avg', got "
            f"pooling={cfg.pooling!r} (strided convolutions are not built)"
        )
    if cfg.kernel_size % 2 == 0:
        raise ValueError(
            "kernel_size must be odd for 'same' padding, got "
            f"{cfg.kernel_size}"
        )


def _lenet_stack(cfg: LeNetConfig) -> list:
    """The layers, in order: conv, pool, conv, pool, flatten, three dense."""
    _check_pooling(cfg)
    pool = L.MaxPooling2D if cfg.pooling == "max" else L.AveragePooling2D
    k, (c1, c2), (h1, h2) = cfg.kernel_size, cfg.channels, cfg.hidden

    def drop(i):  # dropout before each dense layer, as in LeNet
        return [L.Dropout(cfg.dropout, name=f"drop{i}")] if cfg.dropout else []

    return [
        L.Conv2D(c1, k, padding="same", activation="relu", name="conv1"),
        pool(2, name="pool1"),
        L.Conv2D(c2, k, activation="relu", name="conv2"),
        pool(2, name="pool2"),
        L.Flatten(name="flatten"),
        *drop(1),
        L.Dense(h1, activation="relu", name="fc1"),
        *drop(2),
        L.Dense(h2, activation="relu", name="fc2"),
        *drop(3),
        L.Dense(cfg.num_classes, name="fc3"),
    ]


def sequential_lenet(cfg: LeNetConfig | None = None):
    """LeNet with the Sequential API: a list of layers, applied in order."""
    cfg = cfg or LeNetConfig()
    size, c = cfg.image_size, cfg.in_channels
    return keras.Sequential(
        [keras.Input((size, size, c)), *_lenet_stack(cfg)], name="sequential"
    )


def functional_lenet(cfg: LeNetConfig | None = None):
    """LeNet with the Functional API: layers called on symbolic tensors."""
    cfg = cfg or LeNetConfig()
    x = inputs = keras.Input((cfg.image_size, cfg.image_size, cfg.in_channels))
    for layer in _lenet_stack(cfg):
        x = layer(x)
    return keras.Model(inputs, x, name="functional")


class SubclassedLeNet(keras.Model):
    """LeNet with the subclassing API: layers in __init__, the pass in call.

    logits = fc3(fc2(fc1(flatten(pool(conv2(pool(conv1(x)))))))), with ReLU
    after both convolutions and the first two dense layers (dropout, if any,
    before each dense layer), as in ``dlbook.convnets.cnn.LeNet``.

    Shapes:
        x: (N, image_size, image_size, in_channels) -> (N, num_classes)
    """

    def __init__(self, cfg: LeNetConfig | None = None, **kwargs):
        super().__init__(name=kwargs.pop("name", "subclassed"), **kwargs)
        self.cfg = cfg = cfg or LeNetConfig()
        self.stack = _lenet_stack(cfg)

    def call(self, x, training=False):
        for layer in self.stack:
            x = layer(x, training=training) if _is_dropout(layer) else layer(x)
        return x


def _is_dropout(layer) -> bool:
    return isinstance(layer, L.Dropout)


def build_lenet(api: str, cfg: LeNetConfig | None = None):
    """LeNet as a Keras model written with ``api`` (one of ``APIS``), built."""
    check_choice("api", api, APIS)
    cfg = cfg or LeNetConfig()
    if api == "sequential":
        return sequential_lenet(cfg)
    if api == "functional":
        return functional_lenet(cfg)
    model = SubclassedLeNet(cfg)
    size = cfg.image_size
    model(np.zeros((1, size, size, cfg.in_channels), np.float32))  # builds
    return model


def copy_weights(source, target) -> None:
    """Give ``target`` the weights of ``source``, array by array.

    Raises:
        ValueError: if the two models do not hold arrays of the same shapes.
    """
    ws, wt = source.get_weights(), target.get_weights()
    shapes_s = [w.shape for w in ws]
    shapes_t = [w.shape for w in wt]
    if shapes_s != shapes_t:
        raise ValueError(
            f"target holds weights of shapes {shapes_t}, but source holds "
            f"{shapes_s}: not the same architecture"
        )
    target.set_weights(ws)


_PARAM_ROW = re.compile(r"^\W+(\w+) \((\w+)\)\W.*?([\d,]+)\s*\W*$")


def summary_text(model) -> str:
    """``model.summary()`` as one string instead of printed lines."""
    import rich.console

    lines: list[str] = []
    # In a notebook, the rich console that Keras prints the table with sends
    # an empty display output per line even while capturing; outside Jupyter
    # mode it only captures.
    is_jupyter = rich.console._is_jupyter
    rich.console._is_jupyter = lambda: False
    try:
        model.summary(print_fn=lambda line, **_: lines.append(line))
    finally:
        rich.console._is_jupyter = is_jupyter
    return "\n".join(lines)


def summary_params(model) -> dict[str, int]:
    """The "Param #" column of ``model.summary()``: {layer name: parameters}.

    Read from the printed table, so that it checks what Keras reports, not
    what we compute.
    """
    found = {}
    for line in summary_text(model).splitlines():
        m = _PARAM_ROW.match(line)
        if m:
            found[m.group(1)] = int(m.group(3).replace(",", ""))
    if not found:
        raise ValueError("model.summary() printed no layer rows")
    return found


# --- training: tf.data and a callback ----------------------------------------


def to_nhwc(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images (N, C, H, W), the book's layout, as Keras's (N, H, W, C)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    check_array("x", x, ndim=4, floating=True)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    cache: bool = False,
    prefetch: bool = False,
):
    """A ``tf.data`` pipeline: slices, a per-image map, batches.

    The map turns one NCHW image into NHWC, Keras's layout; ``cache``
    keeps its results in memory after the first epoch, so later epochs skip
    it; ``prefetch`` lets the pipeline prepare the next batches in a
    background thread while the model trains on the current one.

    Args:
        x: images (N, C, H, W), float in [0, 1].
        y: integer labels (N,).
        shuffle_seed: reshuffle every epoch with this seed; None keeps order.
    """
    check_array("x", x, ndim=4, floating=True, nonempty=True)
    check_array("y", y, ndim=1, floating=False)
    check_same_length(x=x, y=y)
    batch_size = check_int("batch_size", batch_size, low=1)

    def preprocess(image, label):
        return tf.transpose(image, (1, 2, 0)), label  # (C, H, W) -> (H, W, C)

    # tf.data would rewrite the map into a parallel one, whose node TF 2.21
    # logs as an error on stderr ("NodeDef mentions attribute
    # use_unbounded_threadpool"); on one thread it gains nothing.
    options = tf.data.Options()
    options.experimental_optimization.map_parallelization = False
    ds = tf.data.Dataset.from_tensor_slices((x, y)).with_options(options)
    ds = ds.map(preprocess)
    if cache:
        ds = ds.cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed)
    ds = ds.batch(batch_size)
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


def time_epochs(ds, epochs: int = 2) -> list[float]:
    """Seconds to iterate over ``ds`` once, for each of ``epochs`` passes."""
    times = []
    for _ in range(check_int("epochs", epochs, low=1)):
        start = time.perf_counter()
        for _batch in ds:
            pass
        times.append(time.perf_counter() - start)
    return times


class EpochTimer(keras.callbacks.Callback):
    """A custom callback: the wall time of every epoch, in ``self.times``."""

    def on_train_begin(self, logs=None):
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def compile_lenet(model, learning_rate: float = 1e-3):
    """Adam on the cross-entropy of the logits, with accuracy as a metric."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


# --- Keras 3 backends --------------------------------------------------------

_BACKEND_SCRIPT = """
import sys, numpy as np, keras
assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
model = keras.saving.load_model(sys.argv[2])
x = np.load(sys.argv[3])
out = keras.ops.convert_to_numpy(model(x, training=False))
np.save(sys.argv[4], out)
"""


def outputs_on_backend(model, x: np.ndarray, backend: str) -> np.ndarray:
    """The outputs of ``model`` on ``x``, computed by another Keras backend.

    The model is saved as a ``.keras`` file and loaded by a fresh Python
    process started with ``KERAS_BACKEND=backend``: Keras picks its backend
    once, at import, so one process cannot hold two.

    Raises:
        RuntimeError: if the other process fails (its standard error is
            part of the message).
    """
    check_choice("backend", backend, ("tensorflow", "torch"))
    check_array("x", x, ndim=len(model.inputs[0].shape), floating=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / n for n in ("model.keras", "x.npy", "out.npy")]
        model.save(paths[0])
        np.save(paths[1], x)
        env = {**os.environ, "KERAS_BACKEND": backend}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        done = subprocess.run(
            [sys.executable, "-c", _BACKEND_SCRIPT, backend, *map(str, paths)],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"the {backend} backend failed:\n{done.stderr[-2000:]}"
            )
        return np.load(paths[2])


# --- weights across frameworks -----------------------------------------------


def flatten_permutation(c: int, h: int, w: int) -> np.ndarray:
    """Where each Keras feature comes from in PyTorch's flattened vector.

    PyTorch flattens (C, H, W), index c·H·W + h·W + w; Keras flattens
    (H, W, C), index (h·W + w)·C + c. Keras feature i is PyTorch feature
    perm[i].
    """
    for name, v in (("c", c), ("h", h), ("w", w)):
        check_int(name, v, low=1)
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def _check_pair(torch_model, keras_model) -> list:
    """The weighted Keras layers, in LeNet's order, after the checks."""
    if not isinstance(torch_model, LeNet):
        raise TypeError(
            "torch_model must be a dlbook.convnets.cnn.LeNet, got "
            f"{type(torch_model).__name__}: only LeNet's layout is converted"
        )
    _check_pooling(torch_model.cfg)
    layers = [layer for layer in _flat_layers(keras_model) if layer.weights]
    names = [layer.name for layer in layers]
    if names != ["conv1", "conv2", "fc1", "fc2", "fc3"]:
        raise ValueError(
            "keras_model must be a Keras LeNet from build_lenet, with "
            "weighted "
            f"layers conv1, conv2, fc1, fc2, fc3; got {names}"
        )
    return layers


def _flat_layers(model) -> list:
    if isinstance(model, SubclassedLeNet):
        return list(model.stack)
    return list(getattr(model, "layers", []))


def _torch_arrays(torch_model: LeNet) -> list[list[np.ndarray]]:
    """LeNet's weights in Keras's layouts, layer by layer."""
    m = torch_model
    perm = flatten_permutation(*m.feature_shape)
    out = []
    for conv in (m.conv1, m.conv2):  # (O, I, kh, kw) -> (kh, kw, I, O)
        w = conv.weight.detach().cpu().numpy()
        out.append([w.transpose(2, 3, 1, 0), conv.bias.detach().numpy()])
    for i, fc in enumerate((m.fc1, m.fc2, m.fc3)):  # (out, in) -> (in, out)
        w = fc.weight.detach().cpu().numpy().T
        out.append([w[perm] if i == 0 else w, fc.bias.detach().numpy()])
    return out


def torch_to_keras(torch_model: LeNet, keras_model) -> None:
    """Copy a PyTorch ``LeNet``'s weights into its Keras twin (in place).

    A convolution kernel (C_out, C_in, k, k) becomes (k, k, C_in, C_out); a
    dense weight (out, in) is transposed; and the first dense layer's rows
    are permuted by ``flatten_permutation``, because the two frameworks
    flatten the feature maps in different orders.

    Raises:
        TypeError: if ``torch_model`` is not a LeNet.
        ValueError: if the Keras model is not its twin (names or shapes).
    """
    layers = _check_pair(torch_model, keras_model)
    for layer, arrays in zip(layers, _torch_arrays(torch_model), strict=True):
        have = [tuple(w.shape) for w in layer.get_weights()]
        want = [a.shape for a in arrays]
        if have != want:
            raise ValueError(
                f"layer {layer.name} holds weights of shapes {have}, but the "
                f"PyTorch LeNet gives {want}: the configurations differ"
            )
        layer.set_weights(arrays)


def keras_to_torch(keras_model, torch_model: LeNet) -> None:
    """Copy a Keras LeNet's weights into a PyTorch ``LeNet`` (in place).

    The inverse of ``torch_to_keras``: the same layouts, undone.
    """
    layers = _check_pair(torch_model, keras_model)
    m = torch_model
    inverse = np.argsort(flatten_permutation(*m.feature_shape))
    modules = (m.conv1, m.conv2, m.fc1, m.fc2, m.fc3)
    with torch.no_grad():
        for i, (layer, module) in enumerate(zip(layers, modules, strict=True)):
            w, b = layer.get_weights()
            if i < 2:
                w = w.transpose(3, 2, 0, 1)  # (k, k, I, O) -> (O, I, k, k)
            else:
                w = (w[inverse] if i == 2 else w).T  # (in, out) -> (out, in)
            if w.shape != tuple(module.weight.shape):
                raise ValueError(
                    f"layer {layer.name} holds a kernel of shape {w.shape} in "
                    f"PyTorch's layout, but the PyTorch LeNet expects "
                    f"{tuple(module.weight.shape)}: the configurations differ"
                )
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            module.bias.copy_(torch.from_numpy(b))


def max_abs_difference(a, b) -> float:
    """max |a − b| over all entries, for arrays or tensors of equal shape."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b)))
