"""Property-based tests (Hypothesis): each optimizer over random hyperparameters follows
torch.optim's trajectory, for real and complex parameters."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook.optimization.optimizers import SGD, Adam, AdamW, RMSprop

rates = st.floats(1e-4, 0.5)
decays = st.sampled_from([0.0, 1e-3, 0.1])
betas = st.tuples(st.floats(0.0, 0.99), st.floats(0.5, 0.9999))

HYPER = {
    SGD: st.fixed_dictionaries(dict(lr=rates, momentum=st.sampled_from([0.0, 0.5, 0.9]), weight_decay=decays)),
    RMSprop: st.fixed_dictionaries(dict(lr=rates, alpha=st.floats(0.5, 0.999), eps=st.sampled_from([1e-8, 1e-3]),
                                        weight_decay=decays, momentum=st.sampled_from([0.0, 0.9]),
                                        centered=st.booleans())),
    Adam: st.fixed_dictionaries(dict(lr=rates, betas=betas, eps=st.sampled_from([1e-8, 1e-3]), weight_decay=decays,
                                     amsgrad=st.booleans())),
    AdamW: st.fixed_dictionaries(dict(lr=rates, betas=betas, weight_decay=decays, amsgrad=st.booleans())),
}


def _loss(p):
    """A non-quadratic loss whose gradients change sign (so moments, maxima and momentum matter)."""
    r = torch.view_as_real(p) if p.is_complex() else p
    return (r.sin() * r + 0.1 * r**4).sum()


@settings(max_examples=30)
@given(st.sampled_from([SGD, RMSprop, Adam, AdamW]), st.data(), st.booleans(), st.integers(0, 2**31 - 1))
def test_random_hyperparameters_give_torch_optims_trajectory(cls, data, complex_params, seed):
    hyper = data.draw(HYPER[cls])
    if cls is SGD and hyper["momentum"] > 0:
        hyper["nesterov"] = data.draw(st.booleans())
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(5, 2, generator=g, dtype=torch.float64)
    if complex_params:
        start = torch.view_as_complex(start)
    p1, p2 = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    o1, o2 = cls([p1], **hyper), getattr(torch.optim, cls.__name__)([p2], **hyper, foreach=False)
    for _ in range(8):
        for p, o in ((p1, o1), (p2, o2)):
            o.zero_grad()
            _loss(p).backward()
            o.step()
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)  # bit for bit, as the module claims
