"""Tests for dlbook.transfer.lora: LoRA layers against PEFT (outputs,
gradients, merged weights), the properties of the update (B = 0 at start,
scale alpha / r, exact merge and unmerge, parameter counts), training runs
that learn, and bad input."""

import copy
import math

import pytest
import torch
from torch import nn

from dlbook.transfer.lora import (
    AdaptConfig,
    LoRAConv2d,
    LoRALinear,
    SmallCNN,
    TextConfig,
    adapt,
    add_lora,
    copy_lora_to_peft,
    count_parameters,
    email_text,
    encode_texts,
    fine_tune_text,
    trim_padding,
    lora_layers,
    merge_lora,
    training_memory,
    unmerge_lora,
)

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors


class Net(nn.Module):
    """A convolution (strided, dilated or plain), a linear layer, a head."""

    def __init__(self, stride=1, dilation=1, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride, padding, dilation)
        self.lin = nn.Linear(8, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean((2, 3))
        return self.head(torch.relu(self.lin(h)))


def _randomise_B(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    for layer in lora_layers(model).values():
        with torch.no_grad():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g))


@pytest.mark.parametrize(
    "stride, dilation, padding", [(1, 1, 1), (2, 1, 0), (2, 1, 2)]
)
@pytest.mark.parametrize("r, alpha", [(1, 1.0), (3, 8.0)])
def test_equal_to_peft(stride, dilation, padding, r, alpha):
    torch.manual_seed(0)
    base = Net(stride, dilation, padding)
    ours = add_lora(copy.deepcopy(base), ["conv", "lin"], r, alpha)
    _randomise_B(ours)
    cfg = peft.LoraConfig(
        r=r, lora_alpha=alpha, target_modules=["conv", "lin"]
    )
    theirs = peft.get_peft_model(copy.deepcopy(base), cfg)
    copy_lora_to_peft(ours, theirs)
    x = torch.randn(2, 3, 9, 9)
    a, b = ours(x), theirs(x)
    torch.testing.assert_close(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    for name, layer in lora_layers(ours).items():
        p = theirs.get_submodule("base_model.model." + name)
        torch.testing.assert_close(
            layer.lora_A.grad, p.lora_A["default"].weight.grad
        )
        torch.testing.assert_close(
            layer.lora_B.grad, p.lora_B["default"].weight.grad
        )
    merged, peft_merged = merge_lora(ours), theirs.merge_and_unload()
    for name in ("conv", "lin"):
        torch.testing.assert_close(
            merged.get_submodule(name).base.weight,
            peft_merged.get_submodule(name).weight,
        )


def test_B_zero_at_start_so_the_model_is_unchanged():
    torch.manual_seed(0)
    base = Net()
    model = add_lora(copy.deepcopy(base), ["conv", "lin"], 2, 4.0)
    x = torch.randn(4, 3, 9, 9)
    assert torch.equal(model(x), base(x))
    for layer in lora_layers(model).values():
        assert torch.count_nonzero(layer.lora_B) == 0
        assert torch.count_nonzero(layer.lora_A) > 0


def test_update_is_alpha_over_r_times_BA():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(copy.deepcopy(base), r=2, alpha=3.0)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(7, 6)
    expected = base(x) + 1.5 * x @ (layer.lora_B @ layer.lora_A).T
    torch.testing.assert_close(layer(x), expected)
    assert layer.scaling == 1.5


def test_merge_then_unmerge_is_exact_up_to_rounding():
    torch.manual_seed(0)
    base = Net()
    model = add_lora(copy.deepcopy(base), ["conv", "lin"], 2, 4.0)
    _randomise_B(model)
    x = torch.randn(3, 3, 9, 9)
    with torch.no_grad():
        before = model(x)
        merge_lora(model)
        assert all(m.merged for m in lora_layers(model).values())
        torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
        unmerge_lora(model)
        torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.conv.base.weight, base.conv.weight)
    torch.testing.assert_close(model.lin.base.weight, base.lin.weight)
    with pytest.raises(RuntimeError, match="not merged"):
        unmerge_lora(model)


def test_dilated_conv_equals_conv_with_merged_weight():
    # PEFT's LoRA convolution ignores dilation, so the reference here is
    # the definition: one convolution with W + (alpha / r) B A
    torch.manual_seed(0)
    base = nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2)
    layer = LoRAConv2d(copy.deepcopy(base), r=2, alpha=3.0)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 3, 11, 11)
    w = base.weight + layer.delta_weight()
    expected = torch.nn.functional.conv2d(x, w, base.bias, 2, 2, 2)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_rank_of_the_update_is_at_most_r():
    layer = LoRAConv2d(nn.Conv2d(4, 16, 3), r=3)
    nn.init.normal_(layer.lora_B)
    delta = layer.delta_weight().flatten(1)
    assert torch.linalg.matrix_rank(delta) == 3


def test_trainable_parameters_are_counted_and_only_lora_and_head_train():
    model = add_lora(Net(), ["conv", "lin"], 2, 1.0, trainable=["head"])
    trainable, total = count_parameters(model)
    conv_lora = 2 * 3 * 3 * 3 + 8 * 2  # A: (2, 3, 3, 3), B: (8, 2, 1, 1)
    lin_lora = 2 * 8 + 12 * 2
    head = 12 * 3 + 3
    assert trainable == conv_lora + lin_lora + head
    assert total == count_parameters(Net())[1] + conv_lora + lin_lora
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("head.") for n in names)


def test_lora_finds_modules_by_suffix_as_peft():
    model = nn.Sequential()
    model.add_module("block", nn.Module())
    model.block.query = nn.Linear(4, 4)
    model.block.key = nn.Linear(4, 4)
    add_lora(model, ["query"], 2)
    assert isinstance(model.block.query, LoRALinear)
    assert isinstance(model.block.key, nn.Linear)


@pytest.mark.parametrize("r", [0, -1, 7])
def test_rank_must_fit_the_layer(r):
    with pytest.raises(ValueError, match="r must be an integer"):
        LoRALinear(nn.Linear(6, 5), r=r)


def test_conv_rank_limit_is_in_times_kernel():
    LoRAConv2d(nn.Conv2d(1, 16, 3), r=9)
    with pytest.raises(ValueError, match=r"r must be an integer in \[1, 9\]"):
        LoRAConv2d(nn.Conv2d(1, 16, 3), r=10)


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.nan, math.inf])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(ValueError, match="alpha must be"):
        LoRALinear(nn.Linear(6, 5), r=2, alpha=alpha)


def test_only_linear_and_conv2d_can_be_wrapped():
    with pytest.raises(TypeError, match="base must be an nn.Linear"):
        LoRALinear(nn.Conv2d(2, 2, 1), r=1)
    with pytest.raises(TypeError, match="base must be an nn.Conv2d"):
        LoRAConv2d(nn.Linear(2, 2), r=1)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(TypeError, match="nn.Linear or nn.Conv2d.*ReLU"):
        add_lora(model, ["1"], 1)
    with pytest.raises(ValueError, match="groups=1"):
        LoRAConv2d(nn.Conv2d(4, 4, 3, groups=2), r=1)


def test_targets_and_trainable_must_name_modules():
    with pytest.raises(ValueError, match="name no module"):
        add_lora(Net(), ["nope"], 1)
    with pytest.raises(ValueError, match="non-empty list"):
        add_lora(Net(), "conv", 1)
    with pytest.raises(ValueError, match="trainable"):
        add_lora(Net(), ["conv"], 1, trainable=["nope"])


def test_merge_twice_is_refused():
    layer = LoRALinear(nn.Linear(3, 3), 1)
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


def test_training_memory_counts_gradients_and_adam_state():
    torch.manual_seed(0)
    full = Net()
    lora = add_lora(Net(), ["conv", "lin"], 1, trainable=["head"])
    x, y = torch.randn(4, 3, 9, 9), torch.tensor([0, 1, 2, 0])
    mb = {}
    for name, m in [("full", full), ("lora", lora)]:
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad])
        mb[name] = training_memory(m, x, y, opt)
    n_full = count_parameters(full)[0]
    assert mb["full"]["gradients"] == pytest.approx(4 * n_full / 2**20)
    assert mb["full"]["optimizer state"] > 2 * mb["full"]["gradients"]
    n_lora = count_parameters(lora)[0]
    assert mb["lora"]["gradients"] == pytest.approx(4 * n_lora / 2**20)
    assert mb["lora"]["activations"] > 0


def test_adapt_learns_and_lora_trains_fewer_parameters():
    g = torch.Generator().manual_seed(0)
    # two classes told apart by the brightness of the left half
    x = torch.rand(128, 1, 28, 28, generator=g) * 0.5
    y = torch.arange(128) % 2
    x[y == 1, :, :, :14] += 0.5
    pretrained = SmallCNN()
    config = AdaptConfig(epochs=3, batch_size=32)
    got = {
        m: adapt(pretrained, m, x[:96], y[:96], x[96:], y[96:], config, r=r)
        for m, r in [("lora", 2), ("full", None)]
    }
    assert got["lora"]["acc"] > 0.8 and got["full"]["acc"] > 0.8, got
    assert got["lora"]["trainable"] < got["full"]["trainable"] / 10
    with pytest.raises(ValueError, match="method"):
        adapt(pretrained, "all", x, y, x, y, config)
    with pytest.raises(ValueError, match="r must be given"):
        adapt(pretrained, "lora", x, y, x, y, config)


class TinyEncoder(nn.Module):
    """A BERT-shaped stand-in: embeddings, a query and value, no pooler."""

    def __init__(self):
        super().__init__()
        self.config = type("C", (), {"hidden_size": 16})()
        self.emb = nn.Embedding(20, 16)
        self.query = nn.Linear(16, 16)
        self.value = nn.Linear(16, 16)

    def forward(self, input_ids, attention_mask):
        h = self.emb(input_ids)
        h = h + torch.tanh(self.query(h)) * self.value(h)
        return type("O", (), {"last_hidden_state": h})()


def test_fine_tune_text_learns_with_lora_and_full():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 20, (96, 4), generator=g)
    y = torch.arange(96) % 2
    ids[y == 1, 0] = 3  # class 1: the text holds token 3
    x = torch.stack([ids, torch.ones_like(ids)], 1)
    res = {}
    for method, lr in [("lora", 3e-2), ("full", 3e-2)]:
        cfg = TextConfig(method=method, lr=lr, epochs=10, r=2, alpha=4.0)
        res[method] = fine_tune_text(
            TinyEncoder(), x[:64], y[:64], x[64:], y[64:], cfg
        )
    assert res["lora"]["acc"] > 0.75 and res["full"]["acc"] > 0.75, res
    assert res["lora"]["trainable"] < res["full"]["trainable"]
    mem = [res[m]["memory"]["optimizer state"] for m in ("lora", "full")]
    assert mem[0] < mem[1]
    with pytest.raises(ValueError, match="method"):
        fine_tune_text(TinyEncoder(), x, y, x, y, TextConfig(method="x"))
    with pytest.raises(ValueError, match="same, non-zero"):
        fine_tune_text(TinyEncoder(), x[:0], y[:0], x, y, TextConfig())


def test_email_text_keeps_subject_and_body():
    raw = "From: a@b\nSubject: Cheap  pills\nX-Spam: yes\n\nBuy\n now  today"
    assert email_text(raw) == "Cheap  pills\nBuy now today"
    assert email_text(raw, max_chars=5) == "Cheap"


def test_encode_texts_pads_to_the_length():
    class Tok:
        def __call__(self, texts, **kw):
            n, t = len(texts), kw["max_length"]
            return {
                "input_ids": torch.ones(n, t, dtype=torch.long),
                "attention_mask": torch.ones(n, t, dtype=torch.long),
            }

    assert encode_texts(Tok(), ["a", "b"], 5).shape == (2, 2, 5)
    with pytest.raises(ValueError, match="texts"):
        encode_texts(Tok(), "a", 5)
    with pytest.raises(ValueError, match="max_length"):
        encode_texts(Tok(), ["a"], 1)


def _tiny_roberta(seed=0):
    """RoBERTa's architecture at toy size, randomly initialised (no download)."""
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=40, pad_token_id=1,
    )
    return RobertaModel(config).eval()


def _roberta_batch(n, t, seed=0):
    """RoBERTa-style ids (<s> = 0 ... </s> = 2, padding 1), right-padded."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, t - 2, (n,), generator=g)
    ids = torch.randint(5, 30, (n, t), generator=g)
    y = torch.arange(n) % 2
    ids[y == 1, 1] = 4  # class 1: the text starts with token 4
    mask = (torch.arange(t)[None] < lengths[:, None] + 2).long()
    ids[:, 0] = 0
    ids[torch.arange(n), lengths + 1] = 2
    ids[mask == 0] = 1
    return torch.stack([ids, mask], 1), y


def test_fine_tune_text_runs_roberta_with_lora_on_query_and_value():
    """The full profile's path (RoBERTa, LoRA on query and value) at toy size."""
    roberta = _tiny_roberta()
    x, y = _roberta_batch(320, 12)
    cfg = TextConfig(method="lora", lr=3e-2, epochs=5, r=2, alpha=2.0)
    res = fine_tune_text(roberta, x[:256], y[:256], x[256:], y[256:], cfg)
    assert res["acc"] > 0.8, res  # chance: 0.5
    # per layer: query and value, each r * (16 + 16); the head 16 * 2 + 2
    assert res["trainable"] == 2 * 2 * 2 * (16 + 16) + 34
    full = fine_tune_text(roberta, x[:64], y[:64], x[64:], y[64:],
                          TextConfig(method="full", lr=1e-3, epochs=1))
    assert full["trainable"] == count_parameters(roberta)[1] - 16 * 16 - 16 \
        + 34  # all but the dropped pooler, plus the head
    assert res["memory"]["optimizer state"] < full["memory"]["optimizer state"]


def test_trim_padding_keeps_roberta_outputs_and_drops_only_padding():
    from dlbook.transfer.lora import TextClassifier

    torch.manual_seed(0)
    model = TextClassifier(_tiny_roberta()).eval()
    x, _ = _roberta_batch(8, 30)
    short = trim_padding(x)
    assert short.shape[-1] == int(x[:, 1].sum(1).max()) < 30
    assert short[:, 1].sum() == x[:, 1].sum()  # no real token is lost
    with torch.no_grad():
        assert torch.allclose(model(short), model(x), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 2, T\)"):
        trim_padding(x[:, 0])
    with pytest.raises(ValueError, match="no real token"):
        trim_padding(torch.zeros(2, 2, 5, dtype=torch.long))
