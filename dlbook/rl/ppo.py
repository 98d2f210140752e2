"""Proximal policy optimization (PPO) with the clipped surrogate objective.

PPO (Schulman et al. 2017) reuses each rollout for several epochs of
minibatch gradient steps. The ratio r_t(θ) = π_θ(a_t | s_t) / π_old(a_t | s_t)
between the policy being trained and the one that collected the data
weights the advantage, and clipping the ratio to [1 − ε, 1 + ε] removes the
incentive to move the policy far from the one that collected the data.

Huang et al. (2022), "The 37 implementation details of PPO", list what the
reference implementation (OpenAI baselines' ``ppo2``) does beyond the paper.
The comments ``# detail N`` below mark the ones kept here, numbered as in
their blog post: the 13 core details 1-13 (all kept) and, for continuous
actions, 1-5 of the 9 (marked ``# continuous detail N``); observation
normalization and clipping (6, 7) are left out, reward scaling (8) is a
constant factor instead of a running standard deviation, and reward
clipping (9) is left out. The Atari, LSTM, MultiDiscrete and auxiliary
details do not apply to the chapter's environments.

The rollout pieces come from :mod:`dlbook.rl.policy_gradient`
(``RolloutCollector``, ``gae``, ``ActorCritic``); this module adds the
loss, advantage normalization, a Gaussian policy for continuous actions and
the training loop. The training loop is written here, not with
``dlbook.train.fit``: acting and learning alternate.

Checked against stable-baselines3's ``PPO`` (same settings, same number of
environment steps) in ``book/rl/ppo.md``; the loss pieces against
hand-computed values in ``tests/rl/test_ppo.py``.
Chapter: ``book/rl/ppo.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from dlbook.checks import (
    check_int,
    check_number,
    check_probability,
    check_same_shape,
)
from dlbook.rl.policy_gradient import (
    ActorCritic,
    RolloutCollector,
    gae,
    log_prob_entropy,
    mlp,
)

# --- policies ----------------------------------------------------------------


class GaussianActorCritic(nn.Module):
    """A diagonal Gaussian policy π_θ(a | s) = N(μ_θ(s), diag(σ²)) and a
    state-value critic V_φ(s), for continuous actions.

    The actor MLP gives the mean μ_θ(s) (continuous detail 1); the log of
    the standard deviation is a learned vector that does not depend on the
    state (continuous detail 2), and the action's components are independent,
    so log π(a | s) is a sum over them (continuous detail 3). Actor and
    critic are separate MLPs (continuous detail 4).

    Args:
        obs_dim: size of an observation.
        act_dim: size of an action.
        hidden: widths of the hidden layers of both networks.

    Shapes:
        obs: (B, obs_dim) -> mean (B, act_dim), value (B,).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden=(64, 64)):
        super().__init__()
        self.actor = mlp([obs_dim, *hidden, act_dim])
        self.critic = mlp([obs_dim, *hidden, 1])
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: torch.Tensor):
        return self.actor(obs), self.critic(obs).squeeze(-1)

    def dist(self, mean: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(mean, self.log_std.exp())

    @torch.no_grad()
    def act(self, obs: np.ndarray, generator: torch.Generator | None = None):
        """Sample a ~ π(· | s); returns actions, log π(a | s) and V(s)."""
        mean, value = self(torch.as_tensor(obs, dtype=torch.float32))
        noise = torch.randn(mean.shape, generator=generator)
        action = mean + self.log_std.exp() * noise
        return action, self.dist(mean).log_prob(action).sum(-1), value

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The mean action for one observation (evaluation)."""
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)[None]
            return self.actor(x)[0].numpy()


def evaluate_actions(agent: nn.Module, obs: torch.Tensor, actions):
    """log π_θ(a | s), the entropy of π_θ(· | s) and V(s) under the current
    parameters, for a categorical (``ActorCritic``) or Gaussian policy.

    Shapes:
        obs: (B, obs_dim), actions: (B,) or (B, act_dim) -> three (B,).
    """
    out, value = agent(obs)
    if isinstance(agent, GaussianActorCritic):
        dist = agent.dist(out)
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1), value
    log_p, entropy = log_prob_entropy(out, actions)
    return log_p, entropy, value


def orthogonal_init(agent: nn.Module) -> nn.Module:
    """Orthogonal weights with gain √2 and zero biases in the hidden layers;
    gain 0.01 for the policy's output (a near-uniform first policy) and 1
    for the value's (detail 2, as baselines and SB3 do)."""
    for net, last_gain in ((agent.actor, 0.01), (agent.critic, 1.0)):
        layers = [m for m in net if isinstance(m, nn.Linear)]
        for i, layer in enumerate(layers):
            gain = last_gain if i == len(layers) - 1 else np.sqrt(2)
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
    return agent


def check_box_vec(envs: gym.vector.VectorEnv) -> int:
    """The size of the actions of a vector environment with a 1-D Box action
    space; a clear error otherwise."""
    space = envs.single_action_space
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        raise TypeError(
            "envs must have a 1-D Box action space (a Gaussian policy "
            f"samples a real vector), got {space}"
        )
    return int(space.shape[0])


class BoxRolloutCollector(RolloutCollector):
    """``RolloutCollector`` for continuous actions: actions are stored as
    sampled, unclipped (continuous detail 5: the environment clips them)."""

    check_envs = staticmethod(check_box_vec)


def make_agent(envs: gym.vector.VectorEnv, hidden=(64, 64)):
    """A categorical ``ActorCritic`` for a Discrete action space, a
    ``GaussianActorCritic`` for a 1-D Box, and its rollout collector class;
    a clear error for any other action space."""
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    space = envs.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        return ActorCritic(obs_dim, int(space.n), hidden), RolloutCollector
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        agent = GaussianActorCritic(obs_dim, check_box_vec(envs), hidden)
        return agent, BoxRolloutCollector
    raise TypeError(
        f"envs must have a Discrete or a 1-D Box action space, got {space}"
    )


# --- the loss ---------------------------------------------------------------


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8):
    """(A − mean A) / (std A + eps) over a minibatch (detail 7).

    It changes neither the sign of an advantage relative to the mean nor the
    direction of the gradient, only its scale, which then no longer depends
    on the scale of the rewards. Needs at least two advantages.
    """
    if advantages.numel() < 2:
        raise ValueError(
            "advantages must hold at least 2 values to normalize, got "
            f"{advantages.numel()}"
        )
    eps = check_number("eps", eps, low=0.0)
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def ppo_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    clip_eps: float = 0.2,
    vf_coef: float = 0.5,
    ent_coef: float = 0.0,
    old_values: torch.Tensor | None = None,
    clip_vf: float | None = None,
) -> dict[str, torch.Tensor]:
    """The PPO loss over a minibatch, to minimize (detail 10):

    r = exp(log π_θ(a | s) − log π_old(a | s)),
    L_clip = −mean(min(r A, clip(r, 1 − ε, 1 + ε) A))          (detail 8)
    L_V = mean((R − V(s))²)
    L = L_clip + c_v L_V − c_e mean(H(π(· | s))).

    With ``clip_vf`` (detail 9), L_V = mean(max((R − V)², (R − V_clip)²))
    with V_clip = V_old + clip(V − V_old, −clip_vf, clip_vf).
    Also returns ``approx_kl``, mean((r − 1) − log r), an estimate of
    KL(π_old ‖ π_θ), and ``clip_frac``, the share of ratios outside
    [1 − ε, 1 + ε] (detail 12, not differentiated).

    Shapes:
        every tensor (B,) -> scalars.
    """
    clip_eps = check_number("clip_eps", clip_eps, low=0.0, low_open=True)
    vf_coef = check_number("vf_coef", vf_coef, low=0.0)
    ent_coef = check_number("ent_coef", ent_coef, low=0.0)
    check_same_shape(
        log_probs=log_probs,
        old_log_probs=old_log_probs,
        advantages=advantages,
        values=values,
        returns=returns,
        entropy=entropy,
    )
    log_ratio = log_probs - old_log_probs.detach()
    ratio = log_ratio.exp()
    adv = advantages.detach()
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
    policy = -torch.minimum(ratio * adv, clipped * adv).mean()
    returns = returns.detach()
    value = (returns - values) ** 2
    if clip_vf is not None:
        clip_vf = check_number("clip_vf", clip_vf, low=0.0, low_open=True)
        if old_values is None:
            raise ValueError("clip_vf needs old_values, got None")
        old = old_values.detach()
        v_clip = old + (values - old).clamp(-clip_vf, clip_vf)
        value = torch.maximum(value, (returns - v_clip) ** 2)
    value = value.mean()
    ent = entropy.mean()
    loss = policy + vf_coef * value - ent_coef * ent
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clip_frac = ((ratio - 1).abs() > clip_eps).float().mean()
    return dict(
        loss=loss,
        policy=policy,
        value=value,
        entropy=ent,
        approx_kl=approx_kl,
        clip_frac=clip_frac,
    )


# --- training ---------------------------------------------------------------


@dataclass
class PPOConfig:
    total_steps: int = 100_000  # transitions (all environments together)
    n_envs: int = 8  # environments stepped together (detail 1)
    n_steps: int = 32  # steps per environment per rollout
    batch_size: int = 256  # minibatch size (detail 6)
    n_epochs: int = 20  # passes over each rollout
    gamma: float = 0.98  # discount
    gae_lambda: float = 0.8  # GAE's λ (detail 5)
    lr: float = 1e-3  # Adam's learning rate at the start
    anneal_lr: bool = True  # lr falls linearly to 0 (detail 4)
    adam_eps: float = 1e-5  # Adam's ε (detail 3)
    clip_eps: float = 0.2  # ε of the clipped ratio (detail 8)
    clip_vf: float | None = None  # clip of the value change (detail 9)
    vf_coef: float = 0.5  # weight of the value loss (detail 10)
    ent_coef: float = 0.0  # weight of the entropy bonus (detail 10)
    max_grad_norm: float = 0.5  # global gradient-norm clip (detail 11)
    norm_adv: bool = True  # normalize advantages per minibatch (detail 7)
    reward_scale: float = 1.0  # rewards × this in the loss only
    hidden: tuple[int, ...] = (64, 64)  # separate actor, critic (detail 13)

    def check(self) -> None:
        check_int("cfg.total_steps", self.total_steps, low=1)
        check_int("cfg.n_envs", self.n_envs, low=1)
        check_int("cfg.n_steps", self.n_steps, low=1)
        check_int("cfg.n_epochs", self.n_epochs, low=1)
        check_int("cfg.batch_size", self.batch_size, low=2)
        if self.batch_size > self.n_envs * self.n_steps:
            raise ValueError(
                f"cfg.batch_size={self.batch_size} is larger than the "
                f"rollout, n_envs × n_steps = {self.n_envs * self.n_steps}"
            )
        check_probability("cfg.gamma", self.gamma)
        check_probability("cfg.gae_lambda", self.gae_lambda)
        check_number("cfg.lr", self.lr, low=0.0, low_open=True)
        check_number("cfg.adam_eps", self.adam_eps, low=0.0, low_open=True)
        check_number("cfg.clip_eps", self.clip_eps, low=0.0, low_open=True)
        if self.clip_vf is not None:
            check_number("cfg.clip_vf", self.clip_vf, low=0.0, low_open=True)
        check_number("cfg.vf_coef", self.vf_coef, low=0.0)
        check_number("cfg.ent_coef", self.ent_coef, low=0.0)
        check_number(
            "cfg.max_grad_norm", self.max_grad_norm, low=0.0, low_open=True
        )
        check_number(
            "cfg.reward_scale", self.reward_scale, low=0.0, low_open=True
        )


@dataclass
class PPOResult:
    agent: nn.Module
    episodes: list[tuple[int, float]] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)  # per update


def ppo_update(agent, optimizer, r, cfg: PPOConfig, generator) -> dict:
    """``cfg.n_epochs`` epochs of minibatch steps on one rollout ``r``;
    returns the last epoch's mean of each loss piece."""
    adv, ret = gae(
        r.rewards * cfg.reward_scale,
        r.values,
        r.next_values,
        r.terminated,
        r.dones,
        cfg.gamma,
        cfg.gae_lambda,
    )
    real = r.mask.flatten() > 0  # drop the steps autoreset spends resetting
    data = dict(
        obs=r.obs.flatten(0, 1)[real],
        actions=r.actions.flatten(0, 1)[real],
        old_log_probs=r.log_probs.flatten()[real],
        old_values=r.values.flatten()[real],
        advantages=adv.flatten()[real],
        returns=ret.flatten()[real],
    )
    n = len(data["obs"])
    for _ in range(cfg.n_epochs):
        order = torch.randperm(n, generator=generator)
        pieces = []
        for start in range(0, n, cfg.batch_size):  # last one may be short
            idx = order[start : start + cfg.batch_size]
            mb = {k: v[idx] for k, v in data.items()}
            log_p, entropy, values = evaluate_actions(
                agent, mb["obs"], mb["actions"]
            )
            a = mb["advantages"]
            if cfg.norm_adv and len(a) > 1:
                a = normalize_advantages(a)
            out = ppo_loss(
                log_p,
                mb["old_log_probs"],
                a,
                values,
                mb["returns"],
                entropy,
                cfg.clip_eps,
                cfg.vf_coef,
                cfg.ent_coef,
                mb["old_values"],
                cfg.clip_vf,
            )
            optimizer.zero_grad()
            out["loss"].backward()
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            optimizer.step()
            pieces.append({k: v.item() for k, v in out.items()})
    return {k: float(np.mean([p[k] for p in pieces])) for k in pieces[0]}


def train_ppo(make_envs, cfg: PPOConfig, seed: int) -> PPOResult:
    """Train PPO on ``make_envs(cfg.n_envs)``, a Gymnasium vector
    environment with Discrete or 1-D Box actions, for ``cfg.total_steps``
    transitions.

    Each update collects ``n_steps`` steps of every environment with the
    current policy, computes GAE advantages, and runs ``ppo_update``. The
    learning rate falls linearly with the steps done, as in SB3.
    """
    cfg.check()
    seed = check_int("seed", seed, low=0)
    torch.manual_seed(seed)
    envs = make_envs(cfg.n_envs)
    agent, collector_cls = make_agent(envs, cfg.hidden)
    orthogonal_init(agent)  # detail 2
    collector = collector_cls(envs, seed)
    optimizer = torch.optim.Adam(
        agent.parameters(), lr=cfg.lr, eps=cfg.adam_eps
    )
    generator = torch.Generator().manual_seed(seed)
    stats = []
    while collector.steps < cfg.total_steps:
        if cfg.anneal_lr:
            left = 1 - collector.steps / cfg.total_steps
            optimizer.param_groups[0]["lr"] = cfg.lr * left
        r = collector.collect(agent, cfg.n_steps, generator)
        stats.append(ppo_update(agent, optimizer, r, cfg, generator))
        stats[-1]["steps"] = collector.steps
    envs.close()
    return PPOResult(agent, collector.episodes, stats)


def make_pendulum_envs(n_envs: int, **kwargs) -> gym.vector.VectorEnv:
    """N Pendulum-v1 environments whose actions are clipped to the valid
    range [−2, 2] (continuous detail 5)."""
    n_envs = check_int("n_envs", n_envs, low=1)
    envs = gym.make_vec("Pendulum-v1", num_envs=n_envs, **kwargs)
    return gym.wrappers.vector.ClipAction(envs)


# --- the library: stable-baselines3's PPO with the same settings ------------


def train_sb3_ppo(env_id: str, cfg: PPOConfig, seed: int):
    """stable-baselines3's ``PPO`` with the settings of ``cfg`` (separate
    64-64 tanh networks, linear learning-rate decay when ``cfg.anneal_lr``)
    on ``cfg.n_envs`` copies of ``env_id``, trained for ``cfg.total_steps``
    steps. SB3 has no reward scale and clips the value without the max, so
    ``cfg.reward_scale`` must be 1 and ``cfg.clip_vf`` None."""
    from dlbook.rl.dqn import import_stable_baselines3

    cfg.check()
    if cfg.reward_scale != 1.0:
        raise ValueError(
            f"cfg.reward_scale={cfg.reward_scale}: SB3's PPO has none, "
            "expected 1.0"
        )
    if cfg.clip_vf is not None:  # SB3 clips V without the max of detail 9
        raise ValueError(
            f"cfg.clip_vf={cfg.clip_vf}: SB3 clips the value differently, "
            "expected None"
        )
    import_stable_baselines3()
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(env_id, n_envs=cfg.n_envs, seed=seed)
    lr = (lambda left: cfg.lr * left) if cfg.anneal_lr else cfg.lr
    model = PPO(
        "MlpPolicy",
        envs,
        learning_rate=lr,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_eps,
        clip_range_vf=cfg.clip_vf,
        normalize_advantage=cfg.norm_adv,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.max_grad_norm,
        policy_kwargs=dict(
            net_arch=dict(pi=list(cfg.hidden), vf=list(cfg.hidden)),
            activation_fn=nn.Tanh,
            optimizer_kwargs=dict(eps=cfg.adam_eps),
        ),
        seed=seed,
        device="cpu",
    )
    return model.learn(cfg.total_steps)
