"""Deep deterministic policy gradient (DDPG) and its successor TD3.

DDPG (Lillicrap et al. 2016) learns a deterministic policy a = μ_θ(s) for
continuous actions with the deterministic policy gradient of Silver et al.
(2014): the actor climbs the critic, ∇_θ J = E[∇_a Q_φ(s, a)|_{a=μ_θ(s)}
∇_θ μ_θ(s)], while the critic Q_φ learns from a replay buffer by the
bootstrapped target of DQN, computed with slowly moving (Polyak-averaged)
target copies of both networks. The actor ends in tanh, scaled to the
action bounds; exploration adds Gaussian noise to the actor's action (the
paper used an Ornstein-Uhlenbeck process).

TD3 (Fujimoto et al. 2018) is the same loop with three changes, each a
field of ``DDPGConfig``: two critics and the smaller of their targets
(``n_critics=2``, clipped double Q), an actor and target update only every
second critic step (``policy_delay=2``), and clipped noise on the target's
action (``target_noise=0.2``, target policy smoothing). ``td3_config`` sets
all three.

As in :mod:`dlbook.rl.dqn`, several independent agents (seeds) train in
lockstep: their networks are ``QEnsemble`` batched MLPs, their transitions
sit in one ``ReplayBuffer`` side by side, and each has its own environment.
The training loop is written here, not with ``dlbook.train.fit``: acting and
learning interleave step by step.

Reference: stable-baselines3's ``DDPG`` and ``TD3``. ``sb3_update_gap``
checks that our update equals theirs from the same weights on the same
minibatch; ``sb3_ddpg`` trains them with the same settings, and the chapter
``book/rl/ddpg.md`` compares both on Pendulum-v1. The losses, the soft
update and the action scaling are checked against hand-computed values in
``tests/rl/test_ddpg.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from dlbook.checks import (
    check_int,
    check_nonempty,
    check_number,
    check_probability,
)
from dlbook.rl.dqn import (
    QEnsemble,
    ReplayBuffer,
    evaluate_agents,
    import_stable_baselines3,
    seed_env,
)

# --- action bounds -----------------------------------------------------------


def check_box(env: gym.Env) -> tuple[int, np.ndarray, np.ndarray]:
    """The size and the bounds of an environment's 1-D, bounded Box action
    space; a clear error for any other (a Discrete one has no ∇_a Q)."""
    space = env.action_space
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        raise TypeError(
            "env must have a 1-D Box action space (DDPG needs the gradient "
            f"of Q with respect to a real-valued action), got {space}"
        )
    low, high = space.low.astype(np.float32), space.high.astype(np.float32)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(
            f"env's action space must be bounded (tanh scaling), got {space}"
        )
    return int(space.shape[0]), low, high


def scale_action(a, low, high):
    """Map a ∈ [−1, 1] (the actor's tanh) onto [low, high], componentwise:
    low + (a + 1) (high − low) / 2."""
    return low + 0.5 * (a + 1.0) * (high - low)


# --- networks ----------------------------------------------------------------


class Actor(nn.Module):
    """N deterministic policies μ_θ(s) = tanh(MLP_θ(s)) ∈ [−1, 1]^act_dim,
    one per agent; ``scale_action`` maps them onto the action bounds.

    Shapes:
        obs: (N, B, obs_dim) -> actions (N, B, act_dim).
    """

    def __init__(self, n_agents, obs_dim, act_dim, hidden=(64, 64)):
        super().__init__()
        self.net = QEnsemble(n_agents, obs_dim, act_dim, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class Critics(nn.Module):
    """K critics Q_φk(s, a) for each of N agents: MLPs of the concatenated
    observation and (scaled) action, as in stable-baselines3 (the DDPG
    paper fed the action into the second layer instead).

    Shapes:
        obs: (N, B, obs_dim), action: (N, B, act_dim) -> (K, N, B).
    """

    def __init__(self, n_agents, n_critics, obs_dim, act_dim, hidden=(64, 64)):
        super().__init__()
        self.n_critics = n_critics
        self.net = QEnsemble(
            n_critics * n_agents, obs_dim + act_dim, 1, hidden
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)  # (N, B, obs_dim + act_dim)
        n, b = x.shape[:2]
        if self.n_critics > 1:
            x = x.repeat(self.n_critics, 1, 1)  # (K N, B, obs + act)
        q = self.net(x)  # (K N, B, 1)
        return q.view(self.n_critics, n, b)


# --- targets and losses ------------------------------------------------------


def target_action(actor_target, next_obs, noise_std, noise_clip, generator):
    """The target policy's action at s', smoothed (TD3):
    ã = clip(μ_θ'(s') + clip(ε, −c, c), −1, 1), ε ~ N(0, σ²).
    With σ = 0 (DDPG) it is μ_θ'(s')."""
    a = actor_target(next_obs)
    if noise_std == 0:
        return a
    eps = torch.randn(a.shape, generator=generator) * noise_std
    return (a + eps.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def critic_target(reward, terminated, next_q, gamma):
    """y = r + γ (1 − d) min_k Q_φ'k(s', ã).

    With one critic (DDPG) the min is that critic's value; with two (TD3)
    the smaller one counters the overestimation that maximizing a noisy Q
    causes. d = 1 only at a true end of the episode, not at a time limit.

    Shapes:
        reward, terminated: (...,); next_q: (K, ...) -> (...,).
    """
    gamma = check_probability("gamma", gamma)
    return reward + gamma * (1 - terminated) * next_q.min(dim=0).values


def critic_loss(q, y):
    """Σ_k mean_batch (Q_φk(s, a) − y)², per agent; y gets no gradient.

    Shapes:
        q: (K, N, B), y: (N, B) -> (N,).
    """
    return (q - y.detach()).pow(2).mean(-1).sum(0)


def actor_loss(q1):
    """−mean_batch Q_φ1(s, μ_θ(s)), per agent: its gradient with respect to
    θ is minus the deterministic policy gradient.

    Shapes:
        q1: (N, B) -> (N,).
    """
    return -q1.mean(-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging θ' ← τ θ + (1 − τ) θ' of every parameter; τ = 1
    copies the source (DQN's hard update)."""
    tau = check_number("tau", tau, low=0.0, high=1.0, low_open=True)
    targets, sources = list(target.parameters()), list(source.parameters())
    if len(targets) != len(sources):
        raise ValueError(
            f"target has {len(targets)} parameters, source {len(sources)}"
        )
    torch._foreach_lerp_(targets, sources, tau)  # t + τ (s − t), fused


# --- training ----------------------------------------------------------------


@dataclass
class DDPGConfig:
    total_steps: int = 20_000  # environment steps per agent
    gamma: float = 0.98  # discount
    tau: float = 0.005  # Polyak rate of the target networks
    actor_lr: float = 1e-3  # Adam learning rate of the actor
    critic_lr: float = 1e-3  # Adam learning rate of the critics
    buffer_size: int = 200_000  # replay capacity (transitions per agent)
    batch_size: int = 256  # transitions per gradient step
    learning_starts: int = 100  # steps of uniform random actions first
    train_freq: int = 1  # environment steps between training phases
    gradient_steps: int = 1  # updates in each phase
    noise_std: float = 0.1  # Gaussian exploration noise, tanh units
    hidden: tuple[int, ...] = (64, 64)  # MLP widths of actor and critics
    n_critics: int = 1  # TD3: 2 (clipped double Q)
    policy_delay: int = 1  # critic steps per actor step; TD3: 2
    target_noise: float = 0.0  # σ of the target smoothing; TD3: 0.2
    target_noise_clip: float = 0.5  # c, the clip of that noise

    def check(self) -> None:
        check_int("cfg.total_steps", self.total_steps, low=1)
        check_probability("cfg.gamma", self.gamma)
        check_number("cfg.tau", self.tau, low=0.0, high=1.0, low_open=True)
        check_number("cfg.actor_lr", self.actor_lr, low=0.0, low_open=True)
        check_number("cfg.critic_lr", self.critic_lr, low=0.0, low_open=True)
        check_int("cfg.batch_size", self.batch_size, low=1)
        if check_int("cfg.buffer_size", self.buffer_size, low=1) < (
            self.batch_size
        ):
            raise ValueError(
                "cfg.buffer_size must be >= cfg.batch_size "
                f"({self.batch_size}), got {self.buffer_size}"
            )
        check_int("cfg.learning_starts", self.learning_starts, low=0)
        check_int("cfg.train_freq", self.train_freq, low=1)
        check_int("cfg.gradient_steps", self.gradient_steps, low=1)
        check_number("cfg.noise_std", self.noise_std, low=0.0)
        check_nonempty("cfg.hidden", self.hidden)
        check_int("cfg.n_critics", self.n_critics, low=1)
        check_int("cfg.policy_delay", self.policy_delay, low=1)
        check_number("cfg.target_noise", self.target_noise, low=0.0)
        check_number("cfg.target_noise_clip", self.target_noise_clip, low=0.0)


def td3_config(cfg: DDPGConfig) -> DDPGConfig:
    """``cfg`` with TD3's three changes (Fujimoto et al. 2018)."""
    return replace(cfg, n_critics=2, policy_delay=2, target_noise=0.2)


@dataclass
class DDPGResult:
    actor: Actor  # the trained actors, one per agent
    critics: Critics
    low: np.ndarray  # action bounds
    high: np.ndarray
    episodes: list[list[tuple[int, float]]] = field(default_factory=list)
    # per agent: (environment step at the episode's end, its return)


def ddpg_update(nets, optimizers, batch, cfg, update_actor, generator):
    """One critic step of every agent and, if ``update_actor``, one actor
    step and the soft updates of both targets. Returns the per-agent
    critic loss (N,)."""
    actor, critics, actor_t, critics_t = nets
    actor_opt, critic_opt = optimizers
    obs, action = batch["obs"], batch["action"]
    with torch.no_grad():
        next_a = target_action(
            actor_t,
            batch["next_obs"],
            cfg.target_noise,
            cfg.target_noise_clip,
            generator,
        )
        y = critic_target(
            batch["reward"],
            batch["terminated"],
            critics_t(batch["next_obs"], next_a),
            cfg.gamma,
        )
    loss_q = critic_loss(critics(obs, action), y)
    critic_opt.zero_grad()
    loss_q.sum().backward()  # agents share no parameters: independent grads
    critic_opt.step()
    if update_actor:
        critics.requires_grad_(False)  # the actor step moves θ only
        loss_pi = actor_loss(critics(obs, actor(obs))[0])
        actor_opt.zero_grad()
        loss_pi.sum().backward()
        actor_opt.step()
        critics.requires_grad_(True)
        soft_update(critics_t, critics, cfg.tau)
        soft_update(actor_t, actor, cfg.tau)
    return loss_q.detach()


def train_ddpg(
    make_env: Callable[[], gym.Env], cfg: DDPGConfig, seeds: Sequence[int]
) -> DDPGResult:
    """Train one DDPG (or TD3) agent per seed, in lockstep.

    For the first ``learning_starts`` steps every agent acts uniformly at
    random; afterwards it acts clip(μ_θ(s) + ε, −1, 1), ε ~ N(0, σ²),
    scaled to the action bounds. Every ``train_freq`` steps it takes
    ``gradient_steps`` updates, each a critic step on a minibatch of its
    replay buffer (and an actor step every ``policy_delay`` critic steps).

    Args:
        make_env: builds one environment (bounded 1-D Box actions).
        cfg: hyper-parameters (``td3_config(cfg)`` for TD3).
        seeds: one seed per agent (environment, initialization, noise).
    """
    cfg.check()
    seeds = [
        check_int("seed", s, low=0) for s in check_nonempty("seeds", seeds)
    ]
    n = len(seeds)
    envs = [make_env() for _ in seeds]
    act_dim, low, high = check_box(envs[0])
    obs = np.stack([seed_env(e, s) for e, s in zip(envs, seeds, strict=True)])
    obs = obs.astype(np.float32)
    obs_dim = obs.shape[1]
    torch.manual_seed(seeds[0])
    actor = Actor(n, obs_dim, act_dim, cfg.hidden)
    critics = Critics(n, cfg.n_critics, obs_dim, act_dim, cfg.hidden)
    actor_t = copy.deepcopy(actor).requires_grad_(False)
    critics_t = copy.deepcopy(critics).requires_grad_(False)
    optimizers = (
        # foreach: one fused call per step for all parameters (speed only)
        torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr, foreach=True),
        torch.optim.Adam(critics.parameters(), lr=cfg.critic_lr, foreach=True),
    )
    buffer = ReplayBuffer(
        cfg.buffer_size,
        (obs_dim,),
        n,
        seed=seeds[0],
        action_shape=(act_dim,),
        action_dtype=np.float32,
    )
    rng = np.random.default_rng(seeds)
    generator = torch.Generator().manual_seed(seeds[0])
    result = DDPGResult(actor, critics, low, high, [[] for _ in seeds])
    ep_return, updates = np.zeros(n), 0
    for step in range(1, cfg.total_steps + 1):
        if step <= cfg.learning_starts:
            action = rng.uniform(-1.0, 1.0, size=(n, act_dim))
        else:
            with torch.no_grad():
                mu = actor(torch.from_numpy(obs)[:, None])[:, 0].numpy()
            noise = rng.normal(0.0, cfg.noise_std, size=mu.shape)
            action = np.clip(mu + noise, -1.0, 1.0)
        next_obs, starts = np.empty_like(obs), np.empty_like(obs)
        reward, terminated = np.zeros(n), np.zeros(n)
        for i, env in enumerate(envs):
            o, reward[i], terminated[i], trunc, _ = env.step(
                scale_action(action[i], low, high)
            )
            next_obs[i] = starts[i] = o
            ep_return[i] += reward[i]
            if terminated[i] or trunc:  # s' is stored; the next s is new
                result.episodes[i].append((step, float(ep_return[i])))
                ep_return[i] = 0.0
                starts[i], _ = env.reset()
        buffer.add(obs, action, reward, next_obs, terminated)
        obs = starts
        if step > cfg.learning_starts and step % cfg.train_freq == 0:
            for _ in range(cfg.gradient_steps):
                updates += 1
                ddpg_update(
                    (actor, critics, actor_t, critics_t),
                    optimizers,
                    buffer.sample(cfg.batch_size),
                    cfg,
                    updates % cfg.policy_delay == 0,
                    generator,
                )
    return result


def evaluate_actors(
    result: DDPGResult,
    make_env: Callable[[], gym.Env],
    episodes: int = 10,
    seed: int = 10_000,
) -> np.ndarray:
    """Returns of every agent's noiseless policy μ_θ: (N, episodes).

    Uses ``evaluate_policy`` for each agent, with the same start seeds.
    """

    def to_action(out: torch.Tensor) -> np.ndarray:
        a = torch.tanh(out)[0, 0].numpy()
        return scale_action(a, result.low, result.high)

    return evaluate_agents(
        result.actor.net, to_action, make_env, episodes, seed
    )


# --- the library: stable-baselines3's DDPG / TD3 with the same settings ------


def sb3_ddpg(
    make_env: Callable[[], gym.Env], cfg: DDPGConfig, seed: int
) -> tuple[object, list[tuple[int, float]]]:
    """Train stable-baselines3's ``DDPG`` (or ``TD3``, if ``cfg`` has any of
    TD3's changes) with the settings of ``cfg``.

    Same budget, networks (``hidden``, ReLU, action concatenated to the
    observation), Adam, replay, Polyak rate, uniform warm-up, Gaussian
    exploration noise in tanh units and update cadence (``train_freq``,
    ``gradient_steps``). SB3 has one learning rate for actor and critic,
    so ``cfg.actor_lr`` must equal ``cfg.critic_lr``. Returns the model and
    its training episodes as (step, return).
    """
    cfg.check()
    if cfg.actor_lr != cfg.critic_lr:
        raise ValueError(
            "cfg.actor_lr must equal cfg.critic_lr (SB3 has one learning "
            f"rate), got {cfg.actor_lr} and {cfg.critic_lr}"
        )
    seed = check_int("seed", seed, low=0)
    sb3 = import_stable_baselines3()
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.noise import NormalActionNoise

    env = Monitor(make_env())
    act_dim, _, _ = check_box(env)
    seed_env(env, seed)
    ddpg = (cfg.n_critics, cfg.policy_delay, cfg.target_noise) == (1, 1, 0)
    td3 = dict(
        policy_delay=cfg.policy_delay,
        target_policy_noise=cfg.target_noise,
        target_noise_clip=cfg.target_noise_clip,
    )
    model = (sb3.DDPG if ddpg else sb3.TD3)(
        "MlpPolicy",
        env,
        learning_rate=cfg.actor_lr,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=cfg.train_freq,
        gradient_steps=cfg.gradient_steps,
        action_noise=NormalActionNoise(
            np.zeros(act_dim), cfg.noise_std * np.ones(act_dim)
        ),
        policy_kwargs=dict(net_arch=list(cfg.hidden), n_critics=cfg.n_critics),
        seed=seed,
        device="cpu",
        verbose=0,
        **({} if ddpg else td3),
    )
    model.learn(cfg.total_steps)
    ends = np.cumsum(env.get_episode_lengths())
    returns = env.get_episode_rewards()
    return model, [
        (int(s), float(r)) for s, r in zip(ends, returns, strict=True)
    ]


def _linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def _copy_linears(dst: QEnsemble, index: int, layers: list[nn.Linear]):
    """Agent ``index`` of a ``QEnsemble`` := the MLP of ``layers``."""
    if len(layers) != len(dst.weights):
        raise ValueError(
            f"expected {len(dst.weights)} linear layers, got {len(layers)}"
        )
    with torch.no_grad():
        for w, b, layer in zip(dst.weights, dst.biases, layers, strict=True):
            w[index].copy_(layer.weight.T)  # nn.Linear stores (out, in)
            b[index, 0].copy_(layer.bias)


def nets_from_sb3(model) -> tuple[Actor, Critics, Actor, Critics]:
    """Our actor, critics and their targets (one agent) holding the weights
    of a stable-baselines3 ``DDPG`` or ``TD3`` model, to compare updates."""
    actor_sb3, critic_sb3 = model.actor, model.critic
    linears = _linears(actor_sb3.mu)
    obs_dim, act_dim = linears[0].in_features, linears[-1].out_features
    hidden = [layer.out_features for layer in linears[:-1]]
    k = len(critic_sb3.q_networks)
    nets = []
    for sb3_actor, sb3_critic in (
        (actor_sb3, critic_sb3),
        (model.actor_target, model.critic_target),
    ):
        actor = Actor(1, obs_dim, act_dim, hidden)
        critics = Critics(1, k, obs_dim, act_dim, hidden)
        _copy_linears(actor.net, 0, _linears(sb3_actor.mu))
        for i, q_net in enumerate(sb3_critic.q_networks):
            _copy_linears(critics.net, i, _linears(q_net))  # index k N + n
        nets += [actor, critics]
    actor, critics, actor_t, critics_t = nets
    return (
        actor,
        critics,
        actor_t.requires_grad_(False),
        critics_t.requires_grad_(False),
    )


def sb3_update_gap(
    cfg: DDPGConfig,
    n_updates: int = 3,
    seed: int = 0,
    ours_cfg: DDPGConfig | None = None,
) -> float:
    """How far our updates are from stable-baselines3's: from the same
    weights, ``n_updates`` updates on the same random Pendulum-sized
    minibatch, then the largest of the differences between any two
    parameters (actors, critics and their targets) and the relative
    difference of the mean critic losses.

    Both are needed: Adam's first steps move each parameter by about the
    learning rate whatever the gradient's size, so equal parameters alone
    would not show a wrong target; the loss does.

    SB3's model is built from ``cfg``, our update uses ``ours_cfg`` (default
    ``cfg``). Target smoothing draws random noise, which the two draw
    differently, so ``cfg.target_noise`` must be 0.
    """
    cfg.check()
    ours_cfg = cfg if ours_cfg is None else ours_cfg
    ours_cfg.check()
    if cfg.target_noise != 0 or ours_cfg.target_noise != 0:
        raise ValueError(
            "cfg.target_noise must be 0 (random smoothing noise cannot be "
            f"compared), got {cfg.target_noise}"
        )
    n_updates = check_int("n_updates", n_updates, low=1)
    sb3 = import_stable_baselines3()  # first: it hides TensorBoard
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    td3 = cfg.n_critics > 1 or cfg.policy_delay > 1
    model = (sb3.TD3 if td3 else sb3.DDPG)(
        "MlpPolicy",
        gym.make("Pendulum-v1"),
        learning_rate=cfg.actor_lr,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        policy_kwargs=dict(net_arch=list(cfg.hidden), n_critics=cfg.n_critics),
        seed=seed,
        device="cpu",
        **(
            dict(policy_delay=cfg.policy_delay, target_policy_noise=0.0)
            if td3
            else {}
        ),
    )
    model.set_logger(Logger(None, []))
    nets = nets_from_sb3(model)
    g = torch.Generator().manual_seed(seed)
    b = cfg.batch_size
    obs, next_obs = torch.randn(2, b, 3, generator=g)
    action = torch.rand(b, 1, generator=g) * 2 - 1  # tanh units
    reward = -10 * torch.rand(b, generator=g)
    done = (torch.rand(b, generator=g) < 0.3).float()
    samples = ReplayBufferSamples(
        obs, action, next_obs, done[:, None], reward[:, None]
    )
    model.replay_buffer.sample = lambda *args, **kwargs: samples
    model.train(gradient_steps=n_updates, batch_size=b)
    batch = dict(
        obs=obs[None],
        action=action[None],
        next_obs=next_obs[None],
        reward=reward[None],
        terminated=done[None],
    )
    optimizers = (
        torch.optim.Adam(nets[0].parameters(), lr=ours_cfg.actor_lr),
        torch.optim.Adam(nets[1].parameters(), lr=ours_cfg.critic_lr),
    )
    losses = []
    for step in range(1, n_updates + 1):
        delay = ours_cfg.policy_delay
        losses.append(
            ddpg_update(
                nets, optimizers, batch, ours_cfg, step % delay == 0, g
            ).item()
        )
    theirs = model.logger.name_to_value["train/critic_loss"]
    gap = abs(np.mean(losses) - theirs) / max(1.0, abs(theirs))
    for ours, theirs in zip(nets, nets_from_sb3(model), strict=True):
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            gap = max(gap, (p - q).abs().max().item())
    return float(gap)
