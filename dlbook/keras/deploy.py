"""Saving, exporting and serving a Keras model: ``.keras``, SavedModel,
TFLite in float and int8, and a small HTTP prediction service.

* ``save_model``: one trained Keras 3 model (Chollet et al. 2015) written in
  one of ``FORMATS``: the ``.keras`` archive (architecture, weights and
  compile state), TensorFlow's SavedModel (Abadi et al. 2016) through
  ``model.export``, and a TensorFlow Lite flatbuffer converted by
  ``tf.lite.TFLiteConverter``, in float32 or in full-integer int8 with
  post-training quantization calibrated on a representative dataset
  (Jacob et al. 2018, "Quantization and training of neural networks for
  efficient integer-arithmetic-only inference").
* ``load_predictor``: the saved file back as a function from images
  (N, H, W, C) to logits (N, classes), whatever the format; TFLite files run
  in LiteRT's interpreter (``ai_edge_litert``, the successor of
  ``tf.lite.Interpreter``), which ``TFLitePredictor`` wraps: it resizes the
  batch dimension and applies the int8 model's scale and zero point.
* ``median_latency``: seconds per call, median of repeats.
* ``predict_image`` and ``serve``: the kind of prediction function the ML
  Zoomcamp deploys (their ``predict.py``, with Flask), here on the standard
  library's ``http.server``: POST an image, get the class probabilities as
  JSON; bad requests get a 4xx status and a JSON message.

Checked against the library itself: the TFLite and SavedModel outputs against
the Keras model's (tests/keras/test_deploy.py, which also calls the server
over loopback with good and bad requests). Chapter:
``book/keras/keras-deploy.md``.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from dlbook.backends import _quiet_stderr
from dlbook.backends import keras as _keras
from dlbook.backends import tensorflow as _tensorflow
from dlbook.checks import (
    check_array,
    check_choice,
    check_int,
    check_nonempty,
)

tf = _tensorflow()
keras = _keras()

FORMATS = ("keras", "saved_model", "tflite_float", "tflite_int8")


# --- saving and exporting ----------------------------------------------------


def save_model(model, path, format: str, *, representative=None) -> Path:
    """Write ``model`` to ``path`` in ``format`` (one of ``FORMATS``).

    "keras" is the ``.keras`` archive, which Keras loads back as the same
    model; "saved_model" is a SavedModel directory whose ``serve`` function
    runs without Keras; "tflite_float" and "tflite_int8" are TFLite
    flatbuffers. The int8 model quantizes weights and activations, with
    activation ranges calibrated on ``representative``.

    Args:
        model: a built Keras model with one image input.
        path: the file (or, for "saved_model", the directory) to write.
        representative: images (N, H, W, C), float, that look like the
            inputs the model will see; required for "tflite_int8" only.

    Returns:
        ``path``, as a ``Path``.
    """
    check_choice("format", format, FORMATS)
    path = Path(path)
    if format == "tflite_int8":
        if representative is None:
            raise ValueError(
                "format='tflite_int8' needs a representative dataset to "
                "calibrate the activations' ranges: pass representative="
                "images (N, H, W, C)"
            )
        check_array(
            "representative",
            representative,
            ndim=4,
            floating=True,
            finite=True,
            nonempty=True,
        )
    elif representative is not None:
        raise ValueError(
            f"representative is only used by format='tflite_int8', got "
            f"format={format!r}"
        )
    if format == "keras":
        if path.suffix != ".keras":
            raise ValueError(f"path must end in .keras, got {str(path)!r}")
        model.save(path)
    elif format == "saved_model":
        with _quiet():
            model.export(path, format="tf_saved_model", verbose=False)
    else:
        path.write_bytes(to_tflite(model, representative))
    return path


def to_tflite(model, representative: np.ndarray | None = None) -> bytes:
    """The TFLite flatbuffer of ``model``: float32, or int8 if calibrated.

    With ``representative`` images the converter runs them through the
    model, records each activation's range and quantizes everything to int8,
    the input and output included (an integer-only model, as
    microcontrollers and edge accelerators need).
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:

        def calibration():  # one image at a time, as the converter expects
            for image in representative:
                yield [image[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with _quiet():
        return converter.convert()


@contextlib.contextmanager
def _quiet():
    """No conversion logs: Keras's export prints its signature to stdout,
    the converter's C++ code writes to stderr, and it warns about the
    missing input statistics it then takes from the representative data."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        _quiet_stderr(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)
        yield


def size_on_disk(path) -> int:
    """Bytes of a file, or of all files under a directory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path {str(path)!r} does not exist")
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- loading: one predict function per format --------------------------------


class TFLitePredictor:
    """A TFLite model in LiteRT's interpreter, as images -> float logits.

    An int8 model takes and returns integers. With the input's scale s and
    zero point z, an image x is sent as q = clip(round(x / s) + z, -128,
    127), and an integer output q is read back as s (q - z), each with the
    tensor's own (s, z). The interpreter is not thread-safe, so calls are
    serialized by a lock (the HTTP server answers in threads).

    Shapes:
        x: (N, H, W, C) float -> (N, classes) float32
    """

    def __init__(self, model: bytes | str | Path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        check_int("num_threads", num_threads, low=1)
        content = (
            model if isinstance(model, bytes) else Path(model).read_bytes()
        )
        with _quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate"
            self.interpreter = Interpreter(
                model_content=content, num_threads=num_threads
            )
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.image_shape = tuple(int(d) for d in self.input["shape"][1:])
        self._batch = int(self.input["shape"][0])
        self._lock = threading.Lock()

    @property
    def quantized(self) -> bool:
        return self.input["dtype"] == np.int8

    def __call__(self, x: np.ndarray) -> np.ndarray:
        check_array("x", x, ndim=4, floating=True, nonempty=True)
        if x.shape[1:] != self.image_shape:
            raise ValueError(
                f"x must hold images of shape {self.image_shape}, got "
                f"{x.shape[1:]}"
            )
        if self.quantized:
            s, z = self.input["quantization"]
            x = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
        with self._lock:
            if len(x) != self._batch:  # the batch size is part of the model
                self.interpreter.resize_tensor_input(
                    self.input["index"], x.shape
                )
                self.interpreter.allocate_tensors()
                self._batch = len(x)
            self.interpreter.set_tensor(
                self.input["index"], x.astype(self.input["dtype"], copy=False)
            )
            self.interpreter.invoke()
            out = self.interpreter.get_tensor(self.output["index"])
        if self.quantized:
            s, z = self.output["quantization"]
            return ((out.astype(np.float32) - z) * s).astype(np.float32)
        return out.copy()


def load_predictor(path, format: str) -> Callable[[np.ndarray], np.ndarray]:
    """The model saved at ``path`` as a function images -> logits (NumPy).

    "keras" loads the Keras model back; "saved_model" calls the exported
    ``serve`` function (TensorFlow only, no Keras code); the TFLite formats
    run in a ``TFLitePredictor`` on one thread.
    """
    check_choice("format", format, FORMATS)
    if not Path(path).exists():
        raise FileNotFoundError(f"path {str(path)!r} does not exist")
    if format == "keras":
        model = keras.saving.load_model(path)
        return lambda x: np.asarray(model(x, training=False))
    if format == "saved_model":
        loaded = tf.saved_model.load(str(path))  # keep: it owns the weights
        return lambda x: loaded.serve(tf.constant(x, tf.float32)).numpy()
    return TFLitePredictor(path)


def median_latency(
    predict: Callable, x: np.ndarray, repeats: int = 20, warmup: int = 2
) -> float:
    """Median wall seconds of ``predict(x)`` over ``repeats`` calls.

    The first ``warmup`` calls are not timed: they build graphs, allocate
    tensors and fill caches, which a served model pays once. The median
    ignores the rare slow call of a busy machine.
    """
    repeats = check_int("repeats", repeats, low=1)
    for _ in range(check_int("warmup", warmup, low=0)):
        predict(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# --- serving -----------------------------------------------------------------


class RequestError(ValueError):
    """A request the service refuses: an HTTP status and a message for the
    client, sent back as JSON {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ServeConfig:
    classes: Sequence[str]  # the class names, in the order of the logits
    image_size: tuple[int, int] = (28, 28)  # (width, height) taken
    max_bytes: int = 64 * 1024  # larger bodies are refused (413)
    content_types: tuple[str, ...] = ("image/png", "image/jpeg")
    mode: str = "L"  # PIL's mode the image is converted to: "L" or "RGB"

    def __post_init__(self):
        check_nonempty("classes", self.classes)
        check_choice("mode", self.mode, ("L", "RGB"))
        check_int("max_bytes", self.max_bytes, low=1)
        if len(self.image_size) != 2:
            raise ValueError(
                f"image_size must be (width, height), got {self.image_size!r}"
            )
        for v in self.image_size:
            check_int("image_size", v, low=1)


def read_image(data: bytes, cfg: ServeConfig) -> np.ndarray:
    """An uploaded image as the model's input (1, H, W, C), float in [0, 1].

    C is 1 for ``cfg.mode`` "L" (grey) and 3 for "RGB"; any image PIL reads
    is converted to that mode (a colour photo to grey, say), but not
    resized: a model's input size is part of its contract with clients.

    Raises:
        RequestError: 400 if ``data`` is empty or not an image, 422 if its
            size is not ``cfg.image_size``.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RequestError(400, "empty body: POST the image's bytes")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decodes it all: a truncated file fails here
    except (UnidentifiedImageError, OSError) as err:
        raise RequestError(
            400, f"body is not a readable image ({err})"
        ) from None
    if image.size != tuple(cfg.image_size):
        w, h = cfg.image_size
        raise RequestError(
            422,
            f"image must be {w}x{h} pixels, got "
            f"{image.size[0]}x{image.size[1]}",
        )
    pixels = np.asarray(image.convert(cfg.mode), np.float32) / 255.0
    return pixels.reshape(1, *pixels.shape[:2], -1)  # (1, H, W, C)


def predict_image(data: bytes, predict: Callable, cfg: ServeConfig) -> dict:
    """Classify one uploaded image: its class and each class's probability.

    The Zoomcamp's ``predict.py`` in one function: decode, scale, run the
    model, and turn logits into probabilities with a softmax.
    """
    logits = predict(read_image(data, cfg))[0].astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return {
        "class": cfg.classes[int(p.argmax())],
        "probabilities": dict(zip(cfg.classes, map(float, p), strict=True)),
    }


def _handler(predict: Callable, cfg: ServeConfig):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                self._send(200, predict_image(self._body(), predict, cfg))
            except RequestError as err:
                self._send(err.status, {"error": err.message})
            except Exception as err:  # a bug of ours, not of the client
                self._send(500, {"error": f"{type(err).__name__}: {err}"})

        def _body(self) -> bytes:
            """The request's body, after the checks that need no body."""
            if self.path != "/predict":
                raise RequestError(404, f"no endpoint {self.path}")
            kind = self.headers.get_content_type()  # parameters dropped
            if kind not in cfg.content_types:
                raise RequestError(
                    415,
                    f"Content-Type must be one of {cfg.content_types}, "
                    f"got {self.headers.get('Content-Type')!r}",
                )
            length = self.headers.get("Content-Length") or "0"
            if not length.isdigit():
                raise RequestError(
                    400, f"Content-Length must be an integer, got {length!r}"
                )
            n = int(length)
            if n > cfg.max_bytes:
                self._discard(n)  # else the client may see a reset socket
                raise RequestError(
                    413, f"body of {n} bytes, at most {cfg.max_bytes}"
                )
            return self.rfile.read(n)

        def _discard(self, n: int, chunk: int = 1 << 16):
            self.close_connection = True  # never keep a refused client
            while n > 0 and self.rfile.read(min(chunk, n)):
                n -= chunk

        def do_GET(self):
            self._send(405, {"error": "POST an image to /predict"})

        def _send(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # no access log on stderr
            pass

    return Handler


@contextlib.contextmanager
def serve(predict: Callable, cfg: ServeConfig, port: int = 0) -> Iterator[str]:
    """Serve ``predict`` on loopback in a background thread; yield its URL.

    Port 0 asks the system for a free port. On leaving the block the server
    stops accepting, finishes, closes its socket and its thread ends.
    """
    check_int("port", port, low=0, high=65535)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(predict, cfg))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()  # waits for serve_forever to return
        server.server_close()
        thread.join()


def post_image(
    url: str, data: bytes, content_type: str = "image/png"
) -> tuple[int, dict]:
    """POST ``data`` to ``url``: the HTTP status and the decoded JSON reply."""
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:  # 4xx and 5xx carry JSON too
        with err:
            return err.code, json.loads(err.read())


def png_bytes(image: np.ndarray) -> bytes:
    """An image (H, W), (H, W, 1) grey or (H, W, 3) RGB, in [0, 1], as a PNG
    file's bytes."""
    from PIL import Image

    check_array("image", image, ndim=(2, 3), floating=True, finite=True)
    if image.ndim == 3 and image.shape[2] not in (1, 3):
        raise ValueError(
            f"image must have 1 or 3 channels last, got shape {image.shape}"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # mode L or RGB
    return buffer.getvalue()
