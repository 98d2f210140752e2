"""What the GAT module and the synthetic graphs refuse (reliability probe, issue 13)."""

import pytest
import torch

from dlbook.graphs.gat import GATConv, InductiveTrainConfig, attention_entropy, collate, micro_f1, segment_softmax
from dlbook.graphs.synthetic import csbm, multilabel_graphs


def test_micro_f1_refuses_broadcast_targets():
    """Probe: a (1, L) target was broadcast against (N, L) logits, giving a plausible F1."""
    logits, target = torch.randn(4, 3), torch.ones(1, 3)
    with pytest.raises(ValueError, match=r"logits and target must have the same shape, but logits has \(4, 3\)"):
        micro_f1(logits, target)


def test_micro_f1_of_nothing_is_an_error():
    """Probe: micro_f1 of no predictions returned a perfect 1.0."""
    with pytest.raises(ValueError, match="logits must not be empty"):
        micro_f1(torch.zeros(0, 3), torch.zeros(0, 3))


@pytest.mark.parametrize("src, index, n, exc, match", [
    (torch.randn(4), torch.tensor([0, 1, 5, 1]), 2, ValueError, r"index must hold segments in \[0, 2\), got values from 0 to 5"),
    (torch.randn(4), torch.tensor([0, -1, 1, 1]), 2, ValueError, "from -1 to 1"),
    (torch.randn(4), torch.tensor([0, 1, 1]), 2, ValueError, r"one entry per row of src \(4\), got 3"),
    (torch.randn(4), torch.tensor([0.0, 1.0, 1.0, 0.0]), 2, TypeError, "index must have an integer dtype"),
    (torch.tensor([1, 2, 3]), torch.tensor([0, 0, 1]), 2, TypeError, "src must have a floating dtype"),
    (torch.randn(3), torch.tensor([0, 0, 1]), -1, ValueError, "num_segments must be an integer >= 0"),
])
def test_segment_softmax_checks_its_segments(src, index, n, exc, match):
    with pytest.raises(exc, match=match):
        segment_softmax(src, index, n)


def test_segment_softmax_accepts_int32_index_and_empty_input():
    out = segment_softmax(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 1], dtype=torch.int32), 2)
    torch.testing.assert_close(out, torch.tensor([1 / (1 + torch.e), torch.e / (1 + torch.e), 1.0]))
    assert segment_softmax(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 3).shape == (0, 2)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: GATConv(4, 2)(torch.randn(3, 7), torch.tensor([[0], [1]])), ValueError, r"x must have shape \(N, 4\)"),
    (lambda: GATConv(4, 2)(None, torch.tensor([[0], [1]])), TypeError, "x must be a torch.Tensor"),
    (lambda: GATConv(4, 2, negative_slope=float("nan")), ValueError, "negative_slope"),
    (lambda: collate([]), ValueError, "graphs must not be empty"),
    (lambda: attention_entropy(torch.rand(3, 1), torch.tensor([0, 1, 9]), 2), ValueError, "index must hold segments"),
    (lambda: InductiveTrainConfig(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
    (lambda: InductiveTrainConfig(patience=0), ValueError, "patience must be an integer >= 1"),
    (lambda: csbm(avg_degree=-3), ValueError, "avg_degree must be a finite number >= 0"),
    (lambda: csbm(num_classes=3.5), TypeError, "num_classes must be an integer"),
    (lambda: csbm(noise=float("nan")), ValueError, "noise"),
    (lambda: multilabel_graphs(2, avg_degree=float("nan")), ValueError, "avg_degree"),
])
def test_bad_input_is_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
