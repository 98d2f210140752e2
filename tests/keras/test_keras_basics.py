"""dlbook.keras.keras_basics: three Keras APIs, one LeNet; weights between
Keras and PyTorch; the PyTorch backend of Keras; tf.data; bad input."""

import numpy as np
import pytest
import torch
from torch import nn

from dlbook.config import seed_everything
from dlbook.convnets.cnn import LeNet, LeNetConfig
from dlbook.convnets.convolution import layer_table
from dlbook.keras.keras_basics import (
    APIS,
    build_lenet,
    compile_lenet,
    copy_weights,
    flatten_permutation,
    keras_to_torch,
    lenet_layers,
    make_dataset,
    max_abs_difference,
    outputs_on_backend,
    summary_params,
    to_nhwc,
    torch_to_keras,
)

CONFIGS = [
    LeNetConfig(),
    LeNetConfig(channels=(4, 8), hidden=(32, 16), pooling="avg", dropout=0.3),
    LeNetConfig(in_channels=3, image_size=32, kernel_size=3),
]


def _images(cfg, n=6, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, cfg.in_channels, cfg.image_size, cfg.image_size)
    return rng.random(shape, dtype=np.float32)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_three_apis_have_the_formulas_parameters_and_equal_outputs(cfg):
    seed_everything(0, tensorflow=True)
    models = {api: build_lenet(api, cfg) for api in APIS}
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    formula = [r.params for r in layer_table(shape, lenet_layers(cfg))]
    for api, model in models.items():
        printed = summary_params(model)
        weighted = [
            printed[n] for n in ("conv1", "conv2", "fc1", "fc2", "fc3")
        ]
        assert weighted == [p for p in formula if p], api
        assert model.count_params() == sum(formula), api
    for api in APIS[1:]:
        copy_weights(models["sequential"], models[api])
    x = to_nhwc(_images(cfg))
    ref = np.asarray(models["sequential"](x))
    for api in APIS[1:]:
        np.testing.assert_array_equal(np.asarray(models[api](x)), ref)
    # the check can fail: a fresh model's outputs are different
    fresh = build_lenet("functional", cfg)
    assert max_abs_difference(np.asarray(fresh(x)), ref) > 1e-3


def test_copy_weights_refuses_another_architecture():
    a = build_lenet("sequential")
    b = build_lenet("sequential", LeNetConfig(channels=(4, 16)))
    with pytest.raises(ValueError, match="not the same architecture"):
        copy_weights(a, b)


def test_flatten_permutation_maps_pytorch_features_to_keras_features():
    x = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)  # (N, C, H, W)
    keras_flat = to_nhwc(x).reshape(2, -1)
    perm = flatten_permutation(3, 4, 5)
    np.testing.assert_array_equal(keras_flat, x.flatten(1).numpy()[:, perm])


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("api", APIS)
def test_pytorch_weights_give_the_same_logits_in_keras_and_back(cfg, api):
    torch.manual_seed(1)
    net = LeNet(cfg).eval()
    model = build_lenet(api, cfg)
    torch_to_keras(net, model)
    x = _images(cfg)
    want = net(torch.from_numpy(x)).detach().numpy()
    got = np.asarray(model(to_nhwc(x)))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    back = LeNet(cfg).eval()
    keras_to_torch(model, back)
    for p, q in zip(net.parameters(), back.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_the_flatten_permutation_is_needed():
    torch.manual_seed(2)
    net = LeNet().eval()
    model = build_lenet("sequential")
    torch_to_keras(net, model)
    fc1 = model.get_layer("fc1")
    w, b = net.fc1.weight.detach().numpy().T, net.fc1.bias.detach().numpy()
    fc1.set_weights([w, b])  # rows left in PyTorch's order
    x = _images(LeNetConfig())
    want = net(torch.from_numpy(x)).detach().numpy()
    assert max_abs_difference(np.asarray(model(to_nhwc(x))), want) > 1e-3


def test_the_converter_refuses_models_it_does_not_know():
    model = build_lenet("sequential")
    with pytest.raises(TypeError, match="torch_model must be a dlbook"):
        torch_to_keras(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), model)
    with pytest.raises(ValueError, match="pooling='stride'"):
        torch_to_keras(LeNet(LeNetConfig(pooling="stride")), model)
    with pytest.raises(ValueError, match="configurations differ"):
        torch_to_keras(LeNet(LeNetConfig(hidden=(100, 84))), model)
    with pytest.raises(ValueError, match="configurations differ"):
        keras_to_torch(model, LeNet(LeNetConfig(hidden=(100, 84))))
    with pytest.raises(ValueError, match="weighted layers"):
        torch_to_keras(LeNet(), build_lenet("sequential").layers[0])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="api must be one of"):
        build_lenet("Sequential")
    with pytest.raises(ValueError, match="pooling='stride'"):
        build_lenet("functional", LeNetConfig(pooling="stride"))
    model = build_lenet("sequential")
    with pytest.raises(ValueError, match="backend must be one of"):
        outputs_on_backend(model, np.zeros((1, 28, 28, 1), "f4"), "jax")
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        outputs_on_backend(model, np.zeros((28, 28, 1), "f4"), "torch")
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        to_nhwc(np.zeros((28, 28), "f4"))
    with pytest.raises(ValueError, match="incompatible with the layer"):
        model(np.zeros((1, 1, 28, 28), "f4"))  # NCHW given to a NHWC model
    x = _images(LeNetConfig(), n=4)
    with pytest.raises(ValueError, match="same length"):
        make_dataset(x, np.zeros(3, np.int64), 2)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        make_dataset(x.astype(np.uint8), np.zeros(4, np.int64), 2)
    with pytest.raises(ValueError, match="batch_size must be"):
        make_dataset(x, np.zeros(4, np.int64), 0)


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("prefetch", [False, True])
def test_cache_and_prefetch_do_not_change_the_batches(cache, prefetch):
    x, y = _images(LeNetConfig(), n=10), np.arange(10)
    plain = list(make_dataset(x, y, 4, shuffle_seed=3).as_numpy_iterator())
    ds = make_dataset(x, y, 4, shuffle_seed=3, cache=cache, prefetch=prefetch)
    got = list(ds.as_numpy_iterator())
    assert len(got) == len(plain) == 3
    for (a, la), (b, lb) in zip(got, plain, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    np.testing.assert_allclose(got[0][0].min(), 0, atol=0.01)
    assert got[0][0].shape == (4, 28, 28, 1)


def test_a_short_fit_learns_and_is_deterministic():
    rng = np.random.default_rng(0)
    # two classes a LeNet separates at once: bright top half, bright bottom
    y = rng.integers(0, 2, 128)
    x = rng.random((128, 1, 28, 28), dtype=np.float32) * 0.5
    x[y == 0, :, :14] += 0.5
    x[y == 1, :, 14:] += 0.5
    runs = []
    for _ in range(2):
        seed_everything(0, tensorflow=True)
        model = compile_lenet(build_lenet("sequential"), 3e-3)
        ds = make_dataset(x, y, 32, shuffle_seed=0)
        hist = model.fit(ds, epochs=2, shuffle=False, verbose=0)
        runs.append(hist.history["loss"])
    assert runs[0] == runs[1]
    _, acc = model.evaluate(make_dataset(x, y, 64), verbose=0)
    assert acc > 0.9, acc
    assert runs[0][-1] < runs[0][0]


def test_the_pytorch_backend_gives_the_same_outputs():
    seed_everything(0, tensorflow=True)
    model = build_lenet("functional")
    x = to_nhwc(_images(LeNetConfig()))
    ref = np.asarray(model(x))
    got = outputs_on_backend(model, x, "torch")
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    assert np.abs(ref).max() > 1e-2  # not all zeros
