"""dlbook.backends: TensorFlow and Keras imported without a line on stderr, with the
book's thread settings. Run in a fresh interpreter: the import happens once a process."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from dlbook.backends import keras, tensorflow
tf = tensorflow()
k = keras()
assert tensorflow() is tf and "tensorflow" in sys.modules
assert k.__version__.startswith("3."), k.__version__
assert tf.config.threading.get_intra_op_parallelism_threads() == 1
assert tf.config.threading.get_inter_op_parallelism_threads() == 1
x = k.ops.convert_to_numpy(k.layers.Dense(2, kernel_initializer="ones")(
    tf.ones((1, 3))))
assert x.tolist() == [[3.0, 3.0]], x
print("ok")
"""


def test_tensorflow_and_keras_load_quietly_with_the_thread_setting():
    env = {**os.environ, "DLBOOK_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the module must quiet TF itself
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True,
        env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
    assert done.stderr == "", done.stderr[-2000:]


SEED_AFTER_TF = """
from dlbook.backends import tensorflow
tf = tensorflow()
from dlbook.config import seed_everything
seed_everything(0, tensorflow=True)  # torch._inductor after TF crashed here
print("ok")
"""


def test_seeding_after_tensorflow_does_not_crash():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", SEED_AFTER_TF], capture_output=True, text=True,
        env=env, timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "ok"


TORCH_AFTER_TF = """
from dlbook.backends import tensorflow
tf = tensorflow()
import torch
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo
import torchvision
import torch._inductor
print("ok")
"""


def test_torch_optimizers_and_torchvision_after_tensorflow_do_not_crash():
    # each of the three crashed (signal 11) when TensorFlow was loaded first
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", TORCH_AFTER_TF], capture_output=True,
        text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "ok"
