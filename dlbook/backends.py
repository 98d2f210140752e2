"""TensorFlow and Keras, imported quietly and with the book's thread settings.

Importing TensorFlow prints C++ log lines to the process's standard error before its
own logging is configured ("Could not find cuda drivers on your machine", "failed call
to cuInit"), whatever ``TF_CPP_MIN_LOG_LEVEL`` says. In a notebook those lines become a
stderr output, which fails the book's build (stderr is an error in a chapter). So every
chapter and module that uses TensorFlow imports it through :func:`tensorflow` (or
:func:`keras`), which silences file descriptor 2 only while TensorFlow loads and
initialises its devices, and sets TensorFlow's thread pools as ``dlbook.config`` sets
PyTorch's.

    from dlbook.backends import keras
    keras = keras()
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null for the duration (C++ logs included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def tensorflow():
    """The ``tensorflow`` module, imported without log noise on standard error."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Triton imported after TensorFlow crashes the process (segmentation
    # fault, torch 2.14 with TF 2.21), and torch imports it lazily through
    # torch._dynamo: the first torch.optim optimizer, `import torchvision`
    # and torch._inductor all crashed in a process that had loaded
    # TensorFlow. Imported first, Triton coexists with TensorFlow
    # (tests/test_backends.py); it costs 75 MB, torch._dynamo would cost 150.
    # PyTorch builds without Triton (CPU-only wheels) have nothing to fix.
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401

    with _quiet_stderr():
        import tensorflow as tf

        threads = os.environ.get("DLBOOK_THREADS")
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        tf.config.list_physical_devices()  # device discovery logs, now
        tf.get_logger().setLevel("ERROR")
    return tf


def keras():
    """The ``keras`` module (Keras 3), after a quiet :func:`tensorflow` import."""
    tensorflow()
    import keras as k

    return k
