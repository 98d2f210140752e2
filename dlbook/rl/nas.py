"""Neural architecture search with a REINFORCE controller, in miniature.

Zoph and Le (2017), "Neural architecture search with reinforcement
learning": a controller samples the decisions that describe a network (here:
input size, depth, width, kernel size), the network is trained briefly, its
validation accuracy is the reward, and the controller's parameters climb the
REINFORCE estimate of the gradient of the expected reward (Williams 1992),
with an exponential moving average of past rewards as the baseline.

* ``SearchSpace``: named decisions, each a list of choices; encodes an
  architecture as the tuple of its choice indices and decodes it back.
* ``FactorizedController``: one categorical distribution per decision, and
  ``LSTMController``, Zoph and Le's autoregressive controller, in which each
  decision depends on the earlier ones through an LSTM.
* ``EMABaseline``, ``reinforce_loss``, ``reinforce_search`` and
  ``random_search``: the search loops, on any reward function.
* ``child_cnn``, ``ProxyTask``: the networks proposed and their short
  training on a fixed train/validation split (``dlbook.train.fit``).
* ``ArchitectureCache``: an evaluation per architecture, in memory and
  optionally on disk, so that a repeat costs no training; counts its hits.

Checked in ``tests/rl/test_nas.py``: the controllers' log-probabilities
equal ``torch.distributions.Categorical``'s, the REINFORCE gradient equals a
hand-computed one, the cache trains once per architecture, encode and decode
are inverse, and a short search concentrates on the best arm of a synthetic
reward. Chapter: ``book/rl/nas.md``.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_labels,
    check_nonempty,
    check_number,
    check_probability,
    check_same_length,
    check_tensor,
)
from dlbook.data.mnist import stratified_subset
from dlbook.train import TensorBatches, evaluate, fit

# --- the search space -----------------------------------------------------


class SearchSpace:
    """Named decisions, each with a list of choices.

    An architecture is a dict ``{decision: choice}``; its *code* is the
    tuple of the chosen indices, in the order of the decisions, which is
    what a controller samples and what the cache is keyed by.

    Args:
        choices: decision name -> the values it may take (at least one
            decision, each with at least one value, no value twice).
    """

    def __init__(self, choices: Mapping[str, Sequence[Any]]):
        if not isinstance(choices, Mapping):
            raise TypeError(
                "choices must be a mapping from decision names to lists of "
                f"values, got {type(choices).__name__}"
            )
        if not choices:
            raise ValueError(
                "choices must name at least one decision, got an empty "
                "search space"
            )
        self.choices: dict[str, tuple] = {}
        for name, values in choices.items():
            if not isinstance(name, str):
                raise TypeError(
                    f"decision names must be strings, got {name!r}"
                )
            if isinstance(values, (str, bytes)) or not isinstance(
                values, Sequence
            ):
                raise TypeError(
                    f"choices[{name!r}] must be a list of values, got "
                    f"{values!r}"
                )
            check_nonempty(f"choices[{name!r}]", values)
            if len(set(values)) != len(values):
                raise ValueError(
                    f"choices[{name!r}] lists a value twice: {list(values)}"
                )
            self.choices[name] = tuple(values)

    @property
    def names(self) -> list[str]:
        return list(self.choices)

    @property
    def sizes(self) -> list[int]:
        """The number of choices of each decision."""
        return [len(v) for v in self.choices.values()]

    def __len__(self) -> int:
        """The number of architectures: the product of the sizes."""
        return int(np.prod(self.sizes))

    def __repr__(self) -> str:
        listed = ", ".join(f"{k}={list(v)}" for k, v in self.choices.items())
        return f"SearchSpace({listed}; {len(self)} architectures)"

    def encode(self, arch: Mapping[str, Any]) -> tuple[int, ...]:
        """The indices of an architecture's choices, in decision order."""
        if not isinstance(arch, Mapping):
            raise TypeError(f"arch must be a dict, got {type(arch).__name__}")
        unknown = [k for k in arch if k not in self.choices]
        if unknown:
            raise ValueError(
                f"arch has unknown decision(s) {unknown}; the search space "
                f"has {self.names}"
            )
        missing = [k for k in self.choices if k not in arch]
        if missing:
            raise ValueError(f"arch lacks the decision(s) {missing}")
        code = []
        for name, values in self.choices.items():
            if arch[name] not in values:
                raise ValueError(
                    f"arch[{name!r}] must be one of {list(values)}, got "
                    f"{arch[name]!r}"
                )
            code.append(values.index(arch[name]))
        return tuple(code)

    def decode(self, code: Sequence[int]) -> dict[str, Any]:
        """The architecture whose choice indices are ``code``."""
        if isinstance(code, torch.Tensor | np.ndarray):
            code = code.tolist()
        if len(code) != len(self.choices):
            raise ValueError(
                f"code must hold {len(self.choices)} indices (one per "
                f"decision {self.names}), got {list(code)}"
            )
        return {
            name: values[
                check_int(f"code[{i}]", c, low=0, high=len(values) - 1)
            ]
            for i, ((name, values), c) in enumerate(
                zip(self.choices.items(), code, strict=True)
            )
        }

    def all_codes(self) -> list[tuple[int, ...]]:
        """Every architecture's code, in lexicographic order."""
        return list(itertools.product(*(range(n) for n in self.sizes)))


# --- controllers ------------------------------------------------------------


class FactorizedController(nn.Module):
    """A policy with one independent categorical per decision.

    π_θ(a) = Π_d softmax(θ_d)[a_d], so log π_θ(a) = Σ_d log softmax(θ_d)[a_d]
    and ∂ log π_θ(a) / ∂θ_d = onehot(a_d) − softmax(θ_d). All logits start
    at zero: the first proposals are uniform, as in random search.

    Shapes:
        sample(n) -> codes (n, D); log_prob(codes (n, D)) -> (n,).
    """

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.logits = nn.ParameterList(
            [nn.Parameter(torch.zeros(n)) for n in space.sizes]
        )

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _check_codes(codes, self.space)
        return sum(
            theta.log_softmax(-1)[codes[:, d]]
            for d, theta in enumerate(self.logits)
        )

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        n = check_int("n", n, low=1)
        picks = [
            torch.multinomial(theta.softmax(-1), n, True, generator=generator)
            for theta in self.logits
        ]
        return torch.stack(picks, 1)  # (n, D)

    def entropy(self) -> torch.Tensor:
        """The entropy of π_θ: the sum of the decisions' entropies."""
        return sum(
            -(t.softmax(-1) * t.log_softmax(-1)).sum() for t in self.logits
        )

    @torch.no_grad()
    def probabilities(self) -> list[np.ndarray]:
        """softmax(θ_d) for each decision d."""
        return [t.softmax(-1).numpy().copy() for t in self.logits]


class LSTMController(nn.Module):
    """Zoph and Le's controller: an LSTM that emits one decision per step.

    Step d reads the embedding of decision d−1's choice (a learned start
    vector at d = 0), and its own linear head turns the LSTM's state into
    the logits of decision d, so π_θ(a) = Π_d π_θ(a_d | a_<d): unlike the
    factorized policy, the choice of a kernel size may depend on the depth
    chosen before it.

    Args:
        space: the search space.
        hidden: the size of the LSTM's state.

    Shapes:
        sample(n) -> codes (n, D); log_prob(codes (n, D)) -> (n,).
    """

    def __init__(self, space: SearchSpace, hidden: int = 32):
        super().__init__()
        hidden = check_int("hidden", hidden, low=1)
        self.space = space
        self.cell = nn.LSTMCell(hidden, hidden)
        self.start = nn.Parameter(torch.zeros(hidden))
        self.embed = nn.ModuleList(
            nn.Embedding(n, hidden) for n in space.sizes
        )
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in space.sizes)

    def _run(self, n, codes=None, generator=None):
        """Log-probabilities of ``codes`` or, without them, samples."""
        x = self.start.expand(n, -1)  # (n, hidden)
        state = None
        log_p, picks = [], []
        for d, head in enumerate(self.heads):
            state = self.cell(x, state)
            logits = head(state[0]).log_softmax(-1)  # (n, choices_d)
            if codes is None:
                a = torch.multinomial(logits.exp(), 1, generator=generator)[
                    :, 0
                ]
            else:
                a = codes[:, d]
            picks.append(a)
            log_p.append(logits.gather(1, a[:, None])[:, 0])
            x = self.embed[d](a)
        return torch.stack(picks, 1), torch.stack(log_p, 1).sum(1)

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _check_codes(codes, self.space)
        return self._run(len(codes), codes)[1]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        n = check_int("n", n, low=1)
        return self._run(n, generator=generator)[0]


def _check_codes(codes: torch.Tensor, space: SearchSpace) -> torch.Tensor:
    check_tensor(
        "codes", codes, shape=(None, len(space.sizes)), floating=False
    )
    for d, n in enumerate(space.sizes):
        check_labels(f"codes[:, {d}]", codes[:, d], n)
    return codes


# --- REINFORCE with a moving-average baseline ------------------------------


@dataclass
class EMABaseline:
    """b ← β b + (1 − β) mean(R): Zoph and Le's baseline.

    ``advantages(rewards)`` returns R − b with the baseline *before* it
    sees these rewards (so b does not depend on the sample it is subtracted
    from), then updates b. The first batch starts b at its own mean.
    """

    decay: float = 0.8  # β: the weight of the past
    value: float | None = None  # b; None before the first batch

    def __post_init__(self):
        self.decay = check_probability("decay", self.decay, allow_one=False)

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        check_tensor("rewards", rewards, ndim=1, nonempty=True, finite=True)
        mean = float(rewards.mean())
        b = mean if self.value is None else self.value
        self.value = self.decay * b + (1 - self.decay) * mean
        return rewards - b


def reinforce_loss(
    log_probs: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """−(1/m) Σ_k (R_k − b) log π_θ(a_k): minus the REINFORCE estimate of
    the gradient's objective over a batch of m architectures.

    The advantages are data (detached); the gradient flows through
    log π_θ(a_k) only.

    Shapes:
        log_probs, advantages: (m,) -> scalar.
    """
    check_tensor("log_probs", log_probs, ndim=1, nonempty=True)
    check_tensor("advantages", advantages, ndim=1, finite=True)
    check_same_length(log_probs=log_probs, advantages=advantages)
    return -(advantages.detach() * log_probs).mean()


@dataclass(frozen=True)
class SearchConfig:
    """The controller's search settings."""

    budget: int = 60  # architectures proposed, repeats included
    batch_size: int = 5  # architectures per controller update (m)
    lr: float = 0.1  # Adam's learning rate for the controller
    baseline_decay: float = 0.8  # β of the moving-average baseline
    entropy_weight: float = 0.0  # bonus on the policy's entropy (factorized)
    controller: str = "factorized"  # or "lstm"
    seed: int = 0  # the controller's initialization and samples

    def __post_init__(self):
        check_int("budget", self.budget, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_number("lr", self.lr, low=0, low_open=True)
        check_probability(
            "baseline_decay", self.baseline_decay, allow_one=False
        )
        check_number("entropy_weight", self.entropy_weight, low=0)
        if self.controller not in ("factorized", "lstm"):
            raise ValueError(
                "controller must be 'factorized' or 'lstm', got "
                f"{self.controller!r}"
            )
        check_int("seed", self.seed, low=0)
        if self.entropy_weight > 0 and self.controller != "factorized":
            raise ValueError(
                "entropy_weight > 0 needs controller='factorized' (the "
                "entropy of the LSTM's policy has no closed form here), got "
                f"controller={self.controller!r}"
            )


@dataclass
class SearchResult:
    """What a search proposed, in order, and what each scored."""

    codes: list[tuple[int, ...]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    # the controller's softmax(θ_d) after each update (factorized only)
    probabilities: list[list[np.ndarray]] = field(default_factory=list)
    controller: nn.Module | None = None  # the trained controller

    def best_so_far(self) -> np.ndarray:
        """The best reward among the first k proposals, for each k."""
        return np.maximum.accumulate(np.asarray(self.rewards))

    def best(self) -> tuple[tuple[int, ...], float]:
        """The best code proposed and its reward (the first if tied)."""
        k = int(np.argmax(self.rewards))
        return self.codes[k], self.rewards[k]


Reward = Callable[[tuple[int, ...]], float]


def _check_reward(reward: float, code) -> float:
    return check_number(f"the reward of {code}", reward)


def reinforce_search(
    space: SearchSpace, reward_fn: Reward, cfg: SearchConfig = SearchConfig()
) -> SearchResult:
    """Search ``space`` with a REINFORCE controller (Zoph and Le 2017).

    Each round samples ``cfg.batch_size`` codes from the controller, scores
    each with ``reward_fn(code)`` (for instance an ``ArchitectureCache``),
    and takes one Adam step on ``reinforce_loss`` with the EMA baseline
    (minus ``cfg.entropy_weight`` times the policy's entropy, which keeps
    it from settling too early), until ``cfg.budget`` codes have been
    proposed (the last round may be smaller).
    """
    if not isinstance(space, SearchSpace):
        raise TypeError(
            f"space must be a SearchSpace, got {type(space).__name__}"
        )
    if not callable(reward_fn):
        raise TypeError("reward_fn must be callable: code -> reward")
    torch.manual_seed(cfg.seed)  # the LSTM controller's initial weights
    controller = (
        FactorizedController(space)
        if cfg.controller == "factorized"
        else LSTMController(space)
    )
    opt = torch.optim.Adam(controller.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    baseline = EMABaseline(cfg.baseline_decay)
    result = SearchResult()
    while len(result.codes) < cfg.budget:
        m = min(cfg.batch_size, cfg.budget - len(result.codes))
        codes = controller.sample(m, gen)  # (m, D)
        rewards = []
        for row in codes.tolist():
            code = tuple(row)
            rewards.append(_check_reward(reward_fn(code), code))
            result.codes.append(code)
        result.rewards += rewards
        adv = baseline.advantages(torch.tensor(rewards))
        loss = reinforce_loss(controller.log_prob(codes), adv)
        if cfg.entropy_weight > 0:  # factorized only (SearchConfig checks)
            loss = loss - cfg.entropy_weight * controller.entropy()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if isinstance(controller, FactorizedController):
            result.probabilities.append(controller.probabilities())
    result.controller = controller
    return result


def random_search(
    space: SearchSpace, reward_fn: Reward, budget: int, seed: int = 0
) -> SearchResult:
    """Score ``budget`` codes drawn uniformly (with replacement) from
    ``space``: the baseline every search method must beat."""
    if not isinstance(space, SearchSpace):
        raise TypeError(
            f"space must be a SearchSpace, got {type(space).__name__}"
        )
    budget = check_int("budget", budget, low=1)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    result = SearchResult()
    for _ in range(budget):
        code = tuple(int(rng.integers(n)) for n in space.sizes)
        result.codes.append(code)
        result.rewards.append(_check_reward(reward_fn(code), code))
    return result


# --- the child networks and their proxy task --------------------------------


def child_cnn(
    arch: Mapping[str, Any], in_channels: int = 1, num_classes: int = 10
) -> nn.Sequential:
    """The small CNN an architecture describes.

    ``depth`` blocks of conv k×k ("same" padding) → ReLU → max-pool 2, the
    first with ``width`` channels and each next one with twice as many, then
    a linear classifier on the flattened maps. ``image_size`` is the side of
    the (square) input.

    Shapes:
        x: (N, in_channels, image_size, image_size) -> (N, num_classes)
    """
    size = check_int("arch['image_size']", arch["image_size"], low=1)
    depth = check_int("arch['depth']", arch["depth"], low=1)
    width = check_int("arch['width']", arch["width"], low=1)
    k = check_int("arch['kernel_size']", arch["kernel_size"], low=1)
    if k % 2 == 0:
        raise ValueError(f"arch['kernel_size'] must be odd, got {k}")
    if size >> depth < 1:
        raise ValueError(
            f"arch['image_size'] {size} is too small for {depth} poolings"
        )
    layers: list[nn.Module] = []
    c_in = check_int("in_channels", in_channels, low=1)
    for i in range(depth):
        c_out = width * 2**i
        layers += [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU()]
        layers.append(nn.MaxPool2d(2))
        c_in, size = c_out, size // 2
    n_out = check_int("num_classes", num_classes, low=2)
    layers += [nn.Flatten(), nn.Linear(c_in * size * size, n_out)]
    return nn.Sequential(*layers)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images resized to size × size (bilinear, antialiased when shrinking).

    Shapes:
        x: (N, C, H, W) -> (N, C, size, size)
    """
    check_tensor("x", x, ndim=4, floating=True)
    size = check_int("size", size, low=1)
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(
        x,
        size=(size, size),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )


@dataclass(frozen=True)
class ChildConfig:
    """How each proposed network is trained: briefly, the same for all."""

    epochs: int = 2  # passes over the proxy training set
    batch_size: int = 32
    lr: float = 3e-3  # Adam
    seed: int = 0  # initial weights and batch order, the same for every child

    def __post_init__(self):
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_number("lr", self.lr, low=0, low_open=True)
        check_int("seed", self.seed, low=0)


class ProxyTask:
    """Train a child on a fixed training split, score it on a fixed
    validation split: the reward of an architecture.

    The images are resized once per input size and kept. Training is
    seeded, so on the CPU one architecture always gets the same reward.

    Args:
        space: the search space (its decisions are ``child_cnn``'s keys).
        x_train, y_train, x_val, y_val: the two splits.
        cfg: the training of every child.
        device: where the children train and the resized images are kept
            (default: the CPU).

    Shapes:
        x_train: (N, C, H, W), y_train: (N,); likewise for x_val, y_val.
    """

    def __init__(
        self,
        space,
        x_train,
        y_train,
        x_val,
        y_val,
        cfg=ChildConfig(),
        device: torch.device | str | None = None,
    ):
        check_tensor("x_train", x_train, ndim=4, floating=True, nonempty=True)
        check_tensor("x_val", x_val, ndim=4, floating=True, nonempty=True)
        check_same_length(x_train=x_train, y_train=y_train)
        check_same_length(x_val=x_val, y_val=y_val)
        self.num_classes = int(y_train.max()) + 1
        check_labels("y_train", y_train, self.num_classes)
        check_labels("y_val", y_val, self.num_classes)
        self.space, self.cfg = space, cfg
        self.device = torch.device(device if device is not None else "cpu")
        self.x_train, self.x_val = x_train, x_val
        self.y_train = y_train.to(self.device)
        self.y_val = y_val.to(self.device)
        self._resized: dict[tuple[str, int], torch.Tensor] = {}

    def images(self, split: str, size: int) -> torch.Tensor:
        """The ``"train"`` or ``"val"`` images at size × size, on the
        task's device (resized on first use, then kept)."""
        check_choice("split", split, ("train", "val"))
        if (split, size) not in self._resized:
            x = self.x_train if split == "train" else self.x_val
            self._resized[split, size] = resize(x, size).to(self.device)
        return self._resized[split, size]

    def train(self, arch: Mapping[str, Any]) -> nn.Module:
        """A child trained on the training split."""
        torch.manual_seed(self.cfg.seed)
        model = child_cnn(arch, self.x_train.shape[1], self.num_classes)
        model.to(self.device)
        x = self.images("train", arch["image_size"])
        gen = torch.Generator().manual_seed(self.cfg.seed)
        batches = TensorBatches(
            x, self.y_train, self.cfg.batch_size, generator=gen
        )
        # the learning rate may be one of the searched decisions
        lr = arch.get("lr", self.cfg.lr)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        fit(
            model,
            batches,
            opt,
            epochs=self.cfg.epochs,
            metrics={},
            progress=False,
        )
        return model

    def __call__(self, code: Sequence[int]) -> float:
        """The validation accuracy of the architecture ``code`` describes."""
        arch = self.space.decode(code)
        model = self.train(arch)
        return accuracy_on(
            model, self.images("val", arch["image_size"]), self.y_val
        )


def train_val_split(
    x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed split: ``n_val`` examples, as equal per class as the data
    allow (drawn with ``seed``), for validation and the rest for training.

    Returns x_train, y_train, x_val, y_val.
    """
    check_tensor("x", x, nonempty=True)
    n = check_same_length(x=x, y=y)
    n_val = check_int("n_val", n_val, low=1, high=n - 1)
    classes = int(y.max()) + 1
    check_labels("y", y, classes)
    val = torch.from_numpy(stratified_subset(y.numpy(), n_val, seed, classes))
    train = torch.ones(n, dtype=torch.bool)
    train[val] = False
    return x[train], y[train], x[val], y[val]


@torch.no_grad()
def accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The accuracy of ``model`` on (x, y), in batches of 1,000."""
    check_same_length(x=x, y=y)
    batches = list(zip(x.split(1000), y.split(1000), strict=True))
    return evaluate(model, batches, loss_fn=None)["acc"]


# --- the cache ------------------------------------------------------------


class ArchitectureCache:
    """Evaluate each architecture once: a repeat is a dictionary look-up.

    Calling the cache with a code returns ``evaluate(code)``, computed the
    first time only. ``hits`` counts the look-ups that cost nothing,
    ``misses`` the evaluations, ``seconds`` their CPU time. With a ``path``
    the results are also kept in a JSON file, written atomically after
    each evaluation and read back by the next cache on that path, which
    refuses a file saved with other ``settings`` (the results of another
    proxy task are not these).

    Args:
        evaluate: code -> reward.
        path: a JSON file to keep the results in, or None.
        settings: plain values that identify the evaluation (the search
            space, the proxy task's data and training settings); saved
            with the results.
    """

    def __init__(
        self,
        evaluate: Reward,
        path: str | Path | None = None,
        settings: Mapping[str, Any] | None = None,
    ):
        if not callable(evaluate):
            raise TypeError("evaluate must be callable: code -> reward")
        self.evaluate = evaluate
        self.settings = json.loads(json.dumps(dict(settings or {})))
        self.path = Path(path) if path is not None else None
        self.results: dict[tuple[int, ...], float] = {}
        self.hits = self.misses = 0
        self.seconds = 0.0
        if self.path is not None and self.path.exists():
            saved = json.loads(self.path.read_text())
            if saved.get("settings") != self.settings:
                raise ValueError(
                    f"{self.path} was saved with settings "
                    f"{saved.get('settings')}, not {self.settings}: its "
                    "results belong to another evaluation (use another path)"
                )
            self.results = {
                tuple(int(i) for i in key.split(",")): float(value)
                for key, value in saved["results"].items()
            }

    def __len__(self) -> int:
        return len(self.results)

    def __call__(self, code: Sequence[int]) -> float:
        key = tuple(int(c) for c in code)
        if key in self.results:
            self.hits += 1
            return self.results[key]
        start = time.process_time()
        value = float(self.evaluate(key))
        self.seconds += time.process_time() - start
        self.misses += 1
        self.results[key] = value
        if self.path is not None:
            self._save()
        return value

    def _save(self) -> None:
        data = {
            "settings": self.settings,
            "results": {
                ",".join(map(str, k)): v for k, v in self.results.items()
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)
