import numpy as np
import pytest
import torch

from dlbook.data import load_photo
from dlbook.pretrained import efficientnet_lite0, imagenet_categories, to_unit_tensor

DOMESTIC_CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def lite0():
    return efficientnet_lite0()


def test_chelsea_is_a_cat(lite0):
    x = lite0.preprocess(load_photo("chelsea"))
    assert x.shape == (3, 224, 224)
    top = lite0.predict(x[None], k=3)[0]
    assert top[0][0] in DOMESTIC_CATS and sum(p for c, p in top if c in DOMESTIC_CATS) > 0.5


def test_coffee_is_espresso(lite0):
    assert lite0.predict(lite0.preprocess(load_photo("coffee"))[None], k=1)[0][0][0] == "espresso"


def test_model_is_in_eval_mode_and_has_lite0_size(lite0):
    assert not lite0.model.training
    assert sum(p.numel() for p in lite0.model.parameters()) == 4_652_008
    assert isinstance(lite0.model.get_submodule(lite0.target_layer), torch.nn.Conv2d)


def test_normalize_roundtrip(lite0):
    x = torch.rand(3, 10, 10)
    torch.testing.assert_close(lite0.denormalize(lite0.normalize(x)), x)


def test_categories():
    cats = imagenet_categories()
    assert len(cats) == 1000 and cats[281] == "tabby" and cats[967] == "espresso"


def test_index_of_unknown_class(lite0):
    assert lite0.index("espresso") == 967
    with pytest.raises(ValueError, match="close names"):
        lite0.index("cat")


def test_to_unit_tensor_checks_shape():
    assert to_unit_tensor(np.zeros((4, 5, 3), np.uint8)).shape == (3, 4, 5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        to_unit_tensor(np.zeros((4, 5)))
