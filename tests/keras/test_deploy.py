"""dlbook.keras.deploy: .keras round trip, SavedModel, TFLite float and int8
against Keras, the HTTP service with good and bad requests, bad arguments."""

import http.client
import socket

import numpy as np
import pytest

from dlbook.config import seed_everything
from dlbook.convnets.cnn import LeNetConfig
from dlbook.data import load_mnist
from dlbook.keras.deploy import (
    FORMATS,
    RequestError,
    ServeConfig,
    TFLitePredictor,
    load_predictor,
    median_latency,
    png_bytes,
    post_image,
    predict_image,
    read_image,
    save_model,
    serve,
    size_on_disk,
    to_tflite,
)
from dlbook.keras.keras_basics import (
    build_lenet,
    compile_lenet,
    make_dataset,
    to_nhwc,
)

DIGITS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def trained():
    """A small LeNet trained for two epochs on 1,000 MNIST digits."""
    seed_everything(0, tensorflow=True)
    data = load_mnist(n_train=1000, n_test=500)
    cfg = LeNetConfig(channels=(4, 8), hidden=(32, 16))
    model = compile_lenet(build_lenet("functional", cfg), 3e-3)
    ds = make_dataset(
        data.x_train.numpy(), data.y_train.numpy(), 32, shuffle_seed=0
    )
    model.fit(ds, epochs=2, shuffle=False, verbose=0)
    x = to_nhwc(data.x_test)
    return model, x, data.y_test.numpy(), to_nhwc(data.x_train[:100])


def _acc(logits, y):
    return float((logits.argmax(1) == y).mean())


def test_the_fixture_model_learned(trained):
    model, x, y, _ = trained
    assert _acc(np.asarray(model(x)), y) > 0.8  # chance is 0.1


def test_keras_round_trip_gives_the_same_outputs(trained, tmp_path):
    model, x, _, _ = trained
    path = save_model(model, tmp_path / "m.keras", "keras")
    out = load_predictor(path, "keras")(x)
    np.testing.assert_array_equal(out, np.asarray(model(x)))


def test_saved_model_serves_the_same_outputs(trained, tmp_path):
    model, x, _, _ = trained
    path = save_model(model, tmp_path / "sm", "saved_model")
    assert (path / "saved_model.pb").exists()
    out = load_predictor(path, "saved_model")(x)
    np.testing.assert_allclose(out, np.asarray(model(x)), atol=1e-5)


def test_tflite_float_agrees_with_keras(trained, tmp_path):
    model, x, _, _ = trained
    path = save_model(model, tmp_path / "m.tflite", "tflite_float")
    predict = load_predictor(path, "tflite_float")
    assert isinstance(predict, TFLitePredictor) and not predict.quantized
    ref = np.asarray(model(x))
    np.testing.assert_allclose(predict(x), ref, atol=1e-5, rtol=0)
    # batch sizes change between calls: 1, all, 1
    np.testing.assert_allclose(predict(x[:1]), ref[:1], atol=1e-5, rtol=0)
    # the check can fail: another model's logits are far off
    other = build_lenet(
        "functional", LeNetConfig(channels=(4, 8), hidden=(32, 16))
    )
    assert np.abs(np.asarray(other(x)) - predict(x)).max() > 0.1


def test_tflite_int8_agrees_with_keras_on_the_class(trained, tmp_path):
    model, x, y, rep = trained
    path = save_model(
        model, tmp_path / "q.tflite", "tflite_int8", representative=rep
    )
    predict = load_predictor(path, "tflite_int8")
    assert predict.quantized
    assert predict.interpreter.get_input_details()[0]["dtype"] == np.int8
    # images in [0, 1] calibrate the input to scale 1/255, zero point -128
    scale, zero = predict.input["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-6) and zero == -128
    ref, out = np.asarray(model(x)), predict(x)
    assert (out.argmax(1) == ref.argmax(1)).mean() > 0.97
    assert _acc(out, y) > _acc(ref, y) - 0.02
    # the check can fail: images sent without the input's scale and zero
    # point (cast to int8, so every pixel is 0 or 1) are misclassified
    inp, outp = predict.input, predict.output
    raw = np.round(x).astype(np.int8)
    predict.interpreter.resize_tensor_input(inp["index"], raw.shape)
    predict.interpreter.allocate_tensors()
    predict.interpreter.set_tensor(inp["index"], raw)
    predict.interpreter.invoke()
    wrong = predict.interpreter.get_tensor(outp["index"])
    assert (wrong.argmax(1) == ref.argmax(1)).mean() < 0.5
    # about 4x smaller than float: weights take 1 byte instead of 4
    assert size_on_disk(path) < 0.5 * len(to_tflite(model))


def test_int8_conversion_is_deterministic(trained):
    model, _, _, rep = trained
    assert to_tflite(model, rep[:20]) == to_tflite(model, rep[:20])


def test_bad_arguments_are_refused_clearly(trained, tmp_path):
    model, x, _, rep = trained
    with pytest.raises(ValueError, match="format must be one of"):
        save_model(model, tmp_path / "m.onnx", "onnx")
    with pytest.raises(ValueError, match="needs a representative dataset"):
        save_model(model, tmp_path / "q.tflite", "tflite_int8")
    with pytest.raises(ValueError, match="representative must have 4"):
        save_model(
            model, tmp_path / "q.tflite", "tflite_int8", representative=rep[0]
        )
    with pytest.raises(ValueError, match="only used by format='tflite_int8'"):
        save_model(
            model, tmp_path / "f.tflite", "tflite_float", representative=rep
        )
    with pytest.raises(ValueError, match="must end in .keras"):
        save_model(model, tmp_path / "m.h5", "keras")
    with pytest.raises(ValueError, match="format must be one of"):
        load_predictor(tmp_path, "pickle")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_predictor(tmp_path / "missing.tflite", "tflite_float")
    predict = TFLitePredictor(to_tflite(model))
    with pytest.raises(ValueError, match=r"images of shape \(28, 28, 1\)"):
        predict(np.zeros((1, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="repeats must be an integer"):
        median_latency(predict, x[:1], repeats=0)
    assert set(FORMATS) == {
        "keras",
        "saved_model",
        "tflite_float",
        "tflite_int8",
    }


def test_read_image_refuses_bad_bodies_with_a_status():
    cfg = ServeConfig(DIGITS)
    good = png_bytes(np.linspace(0, 1, 784, dtype=np.float32).reshape(28, 28))
    x = read_image(good, cfg)
    assert x.shape == (1, 28, 28, 1)
    np.testing.assert_allclose(
        x.ravel(), np.round(np.linspace(0, 1, 784) * 255) / 255, atol=1e-7
    )
    for body, status, words in [
        (b"", 400, "empty body"),
        (b"not an image at all", 400, "not a readable image"),
        (good[: len(good) // 2], 400, "not a readable image"),  # truncated
        (
            png_bytes(np.zeros((32, 28), np.float32)),
            422,
            "28x28 pixels, got 28x32",
        ),
    ]:
        with pytest.raises(RequestError, match=words) as err:
            read_image(body, cfg)
        assert err.value.status == status


def test_read_image_converts_to_the_configured_mode():
    rng = np.random.default_rng(0)
    rgb = rng.random((6, 5, 3), dtype=np.float32)
    x = read_image(png_bytes(rgb), ServeConfig(DIGITS, (5, 6), mode="RGB"))
    assert x.shape == (1, 6, 5, 3)
    np.testing.assert_allclose(x[0], np.round(rgb * 255) / 255, atol=1e-7)
    grey = read_image(png_bytes(rgb), ServeConfig(DIGITS, (5, 6)))
    assert grey.shape == (1, 6, 5, 1)  # PIL's L = 0.299 R + 0.587 G + 0.114 B
    lum = np.round(rgb * 255) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(grey[0, :, :, 0] * 255, lum, atol=1)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(classes=[]), "classes must not be empty"),
        (dict(classes=DIGITS, mode="CMYK"), "mode must be one of"),
        (dict(classes=DIGITS, image_size=(28,)), "image_size must be"),
        (dict(classes=DIGITS, image_size=(28, 0)), "image_size must be"),
        (dict(classes=DIGITS, max_bytes=0), "max_bytes must be"),
    ],
)
def test_serve_config_refuses_bad_settings(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ServeConfig(**kwargs)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        png_bytes(np.zeros((4, 4, 2), np.float32))


def test_the_server_answers_real_requests_and_refuses_bad_ones(trained):
    model, x, _, _ = trained
    predict = TFLitePredictor(to_tflite(model))
    cfg = ServeConfig(DIGITS, max_bytes=4096)
    image = png_bytes(x[0])
    with serve(predict, cfg) as url:
        status, reply = post_image(url, image)
        assert status == 200
        logits = np.asarray(model(read_image(image, cfg)))[0]
        p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert reply["class"] == DIGITS[int(logits.argmax())]
        got = [reply["probabilities"][d] for d in DIGITS]
        np.testing.assert_allclose(got, p, atol=1e-5)
        assert reply == predict_image(image, predict, cfg)
        wrong_size = png_bytes(np.zeros((14, 14), np.float32))
        noise = np.random.default_rng(0).random((64, 64), dtype=np.float32)
        for body, kind, want, words in [
            (b"", "image/png", 400, "empty body"),
            (b"GIF? no", "image/png", 400, "not a readable image"),
            (wrong_size, "image/png", 422, "must be 28x28 pixels, got 14x14"),
            (image, "text/plain", 415, "Content-Type must be one of"),
            (png_bytes(noise), "image/png", 413, "at most 4096"),
        ]:
            status, reply = post_image(url, body, kind)
            assert status == want and words in reply["error"], reply
        # wrong path, wrong method, bad length: JSON errors too
        assert post_image(url[: -len("predict")] + "x", image)[0] == 404
        host, port = url.split("/")[2].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/predict")
        reply = conn.getresponse()
        assert reply.status == 405 and b"POST an image" in reply.read()
        conn.close()
        # the server still answers after all the refusals
        assert post_image(url, image)[0] == 200
    # stopped cleanly: the port no longer accepts connections
    with (
        pytest.raises(OSError),
        socket.create_connection((host, int(port)), timeout=2),
    ):
        pass


def test_latency_is_a_positive_median(trained):
    model, x, _, _ = trained
    predict = TFLitePredictor(to_tflite(model))
    t = median_latency(predict, x[:8], repeats=5, warmup=1)
    assert 0 < t < 1.0
