"""Policy gradients: REINFORCE, a learned baseline, actor-critic and GAE.

REINFORCE (Williams 1992) climbs the gradient of the expected return with the
score-function estimator of the policy gradient theorem (Sutton et al. 2000);
subtracting a learned state-value baseline leaves it unbiased and lowers its
variance. Advantage actor-critic (A2C, Mnih et al. 2016) replaces the
Monte-Carlo return by a bootstrapped advantage, and generalized advantage
estimation (GAE, Schulman et al. 2016) interpolates between the one-step and
the Monte-Carlo advantage with a parameter λ.

The rollout code works on any Gymnasium vector environment with a discrete
action space, in either of Gymnasium's autoreset modes, and records what the
advantage needs at episode ends: ``terminated`` (the true end, value 0) apart
from ``truncated`` (a time limit, where the value of the final state is
bootstrapped). The PPO chapter reuses ``collect_rollout``, ``Rollout``,
``gae`` and ``ActorCritic``.

The training loop is written here, not with ``dlbook.train.fit``: acting and
learning alternate, and the data depend on the current policy.

Checked in ``tests/rl/test_policy_gradient.py``: ``gae`` equals
stable-baselines3's ``RolloutBuffer.compute_returns_and_advantage`` on the
same rollout (episode ends and time-limit bootstrapping included), the loss
pieces equal hand-computed values, and a short run beats a random policy.
Chapter: ``book/rl/policy-gradient.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from dlbook.checks import (
    check_choice,
    check_int,
    check_number,
    check_probability,
    check_same_shape,
)
from dlbook.rl.dqn import import_stable_baselines3

# --- the policy and its critic ---------------------------------------------


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """A categorical policy π_θ(a | s) and a state-value critic V_φ(s).

    Two separate MLPs (no shared trunk): the actor's outputs are the logits
    of π_θ(· | s) = softmax(logits), the critic's single output is V_φ(s).

    Args:
        obs_dim: size of an observation.
        n_actions: number of discrete actions.
        hidden: widths of the hidden layers of both networks.

    Shapes:
        obs: (B, obs_dim) -> logits (B, n_actions), value (B,).
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden=(64, 64)):
        super().__init__()
        self.actor = mlp([obs_dim, *hidden, n_actions])
        self.critic = mlp([obs_dim, *hidden, 1])

    def forward(self, obs: torch.Tensor):
        return self.actor(obs), self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, generator: torch.Generator | None = None):
        """Sample a ~ π(· | s); returns actions, log π(a | s) and V(s)."""
        logits, value = self(torch.as_tensor(obs, dtype=torch.float32))
        log_p = logits.log_softmax(-1)
        action = torch.multinomial(log_p.exp(), 1, generator=generator)
        return action[:, 0], log_p.gather(-1, action)[:, 0], value

    def greedy(self, obs: np.ndarray) -> int:
        """The most probable action for one observation (evaluation)."""
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)[None]
            return int(self.actor(x).argmax())


def log_prob_entropy(logits: torch.Tensor, actions: torch.Tensor):
    """log π(a | s) of the taken actions, and the entropy of π(· | s)."""
    log_p = logits.log_softmax(-1)
    taken = log_p.gather(-1, actions[..., None])[..., 0]
    return taken, -(log_p.exp() * log_p).sum(-1)


# --- rollouts from a vector environment -------------------------------------


@dataclass
class Rollout:
    """T steps of N environments, indexed [t, i].

    ``next_values[t]`` is V(s_{t+1}), the state the step led to: at a time
    limit (``truncated``) the final state of the episode, not the first
    state of the next one. ``mask[t]`` is 0 for the steps that Gymnasium's
    next-step autoreset spends on resetting (the action is ignored and no
    transition happens); such steps must not enter a loss.

    Shapes:
        obs: (T, N, obs_dim); every other field (T, N).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor  # log π_old(a_t | s_t) when acting (for PPO)
    rewards: torch.Tensor
    values: torch.Tensor  # V(s_t) when acting
    next_values: torch.Tensor  # V(s_{t+1}), see above
    terminated: torch.Tensor  # 1 where s_{t+1} is a true end
    dones: torch.Tensor  # 1 where the episode ended (terminated or truncated)
    mask: torch.Tensor  # 1 where a real transition happened

    @property
    def n_transitions(self) -> int:
        return int(self.mask.sum())


# the fields of a Rollout; those stored as float32 while collecting
FLOAT_KEYS = ("log_probs", "rewards", "values", "terminated", "dones", "mask")
KEYS = (
    "obs",
    "actions",
    "log_probs",
    "rewards",
    "values",
    "next_values",
    "terminated",
    "dones",
    "mask",
)


def check_discrete_vec(envs: gym.vector.VectorEnv) -> int:
    """The number of actions of a vector environment with a Discrete
    action space; a clear error otherwise."""
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise TypeError(
            "envs must have a Discrete action space (a categorical policy "
            f"has one probability per action), got {space}"
        )
    return int(space.n)


class RolloutCollector:
    """Steps a vector environment with a policy and records ``Rollout``s.

    It keeps the environments' current observations between calls, so that
    consecutive rollouts continue the same episodes (A2C, PPO), and tracks
    the return of every finished episode in ``episodes`` as
    (transitions so far, return).

    Args:
        envs: a Gymnasium vector environment, Discrete actions, in the
            next-step or same-step autoreset mode.
        seed: seeds the environments' first reset.
    """

    # checks the action space; a subclass for other policies replaces it
    check_envs = staticmethod(check_discrete_vec)

    def __init__(self, envs: gym.vector.VectorEnv, seed: int):
        self.check_envs(envs)
        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self.mode = check_choice(
            "autoreset_mode",
            mode,
            (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP),
        )
        self.envs = envs
        self.n = envs.num_envs
        seed = check_int("seed", seed, low=0)
        self.obs, _ = envs.reset(seed=seed)
        self.resetting = np.zeros(self.n, dtype=bool)  # next step resets
        self.ep_return = np.zeros(self.n)
        self.steps = 0
        self.episodes: list[tuple[int, float]] = []

    def restart(self) -> None:
        """Reset every environment (the random streams go on)."""
        self.obs, _ = self.envs.reset()
        self.resetting[:] = False
        self.ep_return[:] = 0.0

    @torch.no_grad()
    def collect(self, agent: ActorCritic, n_steps: int, generator=None):
        """Act for ``n_steps`` steps in every environment."""
        T = check_int("n_steps", n_steps, low=1)
        shape = (T, self.n)
        buf = {k: np.zeros(shape, np.float32) for k in FLOAT_KEYS}
        buf["obs"] = np.zeros(shape + self.obs.shape[1:], np.float32)
        space = self.envs.single_action_space  # Discrete: (T, N) integers
        buf["actions"] = np.zeros(shape + space.shape, space.dtype)
        buf["final"] = np.full(shape, np.nan, np.float32)
        for t in range(T):
            action, log_p, value = agent.act(self.obs, generator)
            obs, reward, term, trunc, info = self.envs.step(action.numpy())
            mask = ~self.resetting
            done = (term | trunc) & mask
            if self.mode == AutoresetMode.NEXT_STEP:
                self.resetting = done  # obs is the final state; reset next
            elif done.any():
                # obs holds the next episode's first state; the value at a
                # time limit needs the final state of this one
                idx = np.flatnonzero(done)
                last = torch.as_tensor(np.stack(info["final_obs"][idx]))
                buf["final"][t, idx] = agent(last.float())[1].numpy()
            buf["obs"][t], buf["actions"][t] = self.obs, action.numpy()
            buf["log_probs"][t], buf["values"][t] = log_p, value
            buf["rewards"][t], buf["terminated"][t] = reward, term & mask
            buf["dones"][t], buf["mask"][t] = done, mask
            self._count(reward, done, mask)
            self.obs = obs
        out = {k: torch.from_numpy(v) for k, v in buf.items()}
        last_value = agent(torch.as_tensor(self.obs).float())[1]
        next_values = torch.cat([out["values"][1:], last_value[None]])
        final = out.pop("final")
        next_values = torch.where(final.isnan(), next_values, final)
        return Rollout(next_values=next_values, **out)

    def _count(self, reward, done, mask) -> None:
        self.steps += int(mask.sum())
        self.ep_return += reward * mask
        for i in np.flatnonzero(done):
            self.episodes.append((self.steps, float(self.ep_return[i])))
            self.ep_return[i] = 0.0

    def collect_episodes(self, agent, max_steps: int, generator=None):
        """One whole episode from every environment (REINFORCE's batch).

        Restarts all environments and acts until each has finished one
        episode; steps after an environment's first episode are masked
        out. An episode still running after ``max_steps`` steps is cut
        there (marked done, not terminated).
        """
        max_steps = check_int("max_steps", max_steps, low=1)
        self.restart()
        steps, n_episodes = self.steps, len(self.episodes)
        chunks, ended, length = [], np.zeros(self.n, dtype=bool), 0
        while not ended.all() and length < max_steps:
            r = self.collect(agent, min(16, max_steps - length), generator)
            later = (r.dones.cumsum(0) - r.dones).clamp(max=1)
            alive = (1 - later) * torch.as_tensor(~ended).float()
            for name in ("mask", "dones", "terminated"):
                setattr(r, name, getattr(r, name) * alive)
            ended |= (r.dones.sum(0) > 0).numpy()
            chunks.append(r)
            length += len(r.mask)
        batch = {k: torch.cat([getattr(c, k) for c in chunks]) for k in KEYS}
        batch["dones"][-1] = torch.maximum(
            batch["dones"][-1], torch.as_tensor(~ended).float()
        )
        # the batch's episodes replace those that collect() counted
        del self.episodes[n_episodes:]
        self.steps = steps + int(batch["mask"].sum())
        returns = (batch["rewards"] * batch["mask"]).sum(0)
        self.episodes += [(self.steps, float(g)) for g in returns]
        return Rollout(**batch)


# --- returns and advantages -------------------------------------------------


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016).

    δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)
    A_t = δ_t + γ λ (1 − done_t) A_{t+1},   A_T = 0,

    computed backwards in time. A time limit (done but not terminated)
    still bootstraps from V(s_{t+1}), the episode's final state, but stops
    the sum. λ = 0 gives the one-step TD error, λ = 1 the Monte-Carlo return
    minus V(s_t). The returns, the critic's targets, are A_t + V(s_t).

    Shapes:
        every input (T, N); returns advantages, returns (T, N).
    """
    gamma = check_probability("gamma", gamma)
    lam = check_probability("lam", lam)
    check_same_shape(
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=terminated,
        dones=dones,
    )
    delta = rewards + gamma * (1 - terminated) * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        running = delta[t] + gamma * lam * (1 - dones[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def reward_to_go(
    rewards: torch.Tensor, dones: torch.Tensor, gamma: float
) -> torch.Tensor:
    """G_t = r_t + γ (1 − done_t) G_{t+1}: the discounted rewards from t to
    the end of the episode (GAE with V = 0 and λ = 1).

    Shapes:
        rewards, dones: (T, N) -> (T, N).
    """
    zero = torch.zeros_like(rewards)
    return gae(rewards, zero, zero, dones, dones, gamma, 1.0)[0]


def episode_return(
    rewards: torch.Tensor, dones: torch.Tensor, gamma: float
) -> torch.Tensor:
    """G_0 of the episode each step belongs to, at every step of it.

    Shapes:
        rewards, dones: (T, N) -> (T, N).
    """
    g = reward_to_go(rewards, dones, gamma)
    out = g.clone()
    for t in range(1, len(g)):  # a step after an end starts a new episode
        out[t] = torch.where(dones[t - 1] > 0, g[t], out[t - 1])
    return out


# --- losses ---------------------------------------------------------------


def reinforce_loss(
    log_probs: torch.Tensor,
    psi: torch.Tensor,
    mask: torch.Tensor,
    n_episodes: int,
) -> torch.Tensor:
    """−(1/B) Σ_episodes Σ_t log π(a_t | s_t) Ψ_t: minus the REINFORCE
    estimate of the policy gradient's objective.

    Ψ_t is the weight of each step: the episode's return G_0, the reward
    to go G_t, or G_t − b(s_t) with a baseline. It is data, not a function
    of θ, so it is detached. B = ``n_episodes``.

    Shapes:
        log_probs, psi, mask: (T, N) -> scalar.
    """
    n_episodes = check_int("n_episodes", n_episodes, low=1)
    check_same_shape(log_probs=log_probs, psi=psi, mask=mask)
    return -(log_probs * psi.detach() * mask).sum() / n_episodes


def actor_critic_loss(
    log_probs: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    vf_coef: float = 0.5,
    ent_coef: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The A2C loss, averaged over the real transitions:

    L = −mean(log π(a | s) A) + c_v mean((R − V(s))²) − c_e mean(H(π(·|s))).

    Returns the pieces ``policy``, ``value``, ``entropy`` and their
    weighted sum ``loss``.

    Shapes:
        every tensor (T, N) -> scalars.
    """
    vf_coef = check_number("vf_coef", vf_coef, low=0.0)
    ent_coef = check_number("ent_coef", ent_coef, low=0.0)
    check_same_shape(log_probs=log_probs, values=values, mask=mask)
    n = mask.sum().clamp(min=1)
    policy = -(log_probs * advantages.detach() * mask).sum() / n
    value = ((returns.detach() - values) ** 2 * mask).sum() / n
    ent = (entropy * mask).sum() / n
    loss = policy + vf_coef * value - ent_coef * ent
    return dict(loss=loss, policy=policy, value=value, entropy=ent)


# --- the variance of the gradient estimate ---------------------------------


def fit_value(agent, batches, gamma: float, steps: int = 200, lr=1e-2):
    """Fit the critic V(s) to the reward to go G_t of fixed batches of
    episodes (least squares, Adam), the baseline of a fixed policy."""
    steps = check_int("steps", steps, low=1)
    obs = torch.cat([b.obs[b.mask > 0] for b in batches])
    target = torch.cat(
        [reward_to_go(b.rewards, b.dones, gamma)[b.mask > 0] for b in batches]
    )
    optimizer = torch.optim.Adam(agent.critic.parameters(), lr=lr)
    for _ in range(steps):
        loss = ((agent.critic(obs).squeeze(-1) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def gradient_estimates(agent, batch: Rollout, gamma: float, lam: float):
    """The actor's policy-gradient estimate from one batch of whole
    episodes, with each weighting Ψ_t, as one flat vector each:

    ``return``: the episode's return G_0; ``reward-to-go``: G_t;
    ``baseline``: G_t − V(s_t); ``gae``: GAE(λ) with the same V.
    """
    logits, values = agent(batch.obs)
    values = values.detach()
    log_probs, _ = log_prob_entropy(logits, batch.actions)
    g = reward_to_go(batch.rewards, batch.dones, gamma)
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    adv, _ = gae(
        batch.rewards,
        values,
        next_values,
        batch.terminated,
        batch.dones,
        gamma,
        lam,
    )
    psis = {
        "return": episode_return(batch.rewards, batch.dones, gamma),
        "reward-to-go": g,
        "baseline": g - values,
        "gae": adv,
    }
    n = batch.mask.shape[1]
    out = {}
    for name, psi in psis.items():
        loss = reinforce_loss(log_probs, psi, batch.mask, n)
        grads = torch.autograd.grad(
            loss, list(agent.actor.parameters()), retain_graph=True
        )
        out[name] = -torch.cat([x.flatten() for x in grads])
    return out


# --- training ---------------------------------------------------------------


@dataclass
class PGConfig:
    algo: str = "a2c"  # "reinforce" or "a2c"
    baseline: bool = True  # REINFORCE: subtract a learned V(s)
    total_steps: int = 50_000  # transitions (all environments together)
    n_envs: int = 8  # environments stepped together
    n_steps: int = 8  # A2C: steps per environment between updates
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # A2C: GAE's λ
    lr: float = 1e-3  # Adam learning rate (actor and critic)
    vf_coef: float = 0.5  # weight of the critic's squared error
    ent_coef: float = 0.0  # entropy bonus
    max_grad_norm: float | None = 0.5  # gradient-norm clip; None: none
    hidden: tuple[int, ...] = (64, 64)  # MLP widths
    max_episode_steps: int = 500  # REINFORCE: cap on a batch's length

    def check(self) -> None:
        check_choice("cfg.algo", self.algo, ("reinforce", "a2c"))
        check_int("cfg.total_steps", self.total_steps, low=1)
        check_int("cfg.n_envs", self.n_envs, low=1)
        check_int("cfg.n_steps", self.n_steps, low=1)
        check_probability("cfg.gamma", self.gamma)
        check_probability("cfg.gae_lambda", self.gae_lambda)
        check_number("cfg.lr", self.lr, low=0.0, low_open=True)
        if self.max_grad_norm is not None:
            check_number("cfg.max_grad_norm", self.max_grad_norm, low=0.0)


@dataclass
class PGResult:
    agent: ActorCritic
    episodes: list[tuple[int, float]] = field(default_factory=list)


def make_cartpole_envs(n_envs: int, **kwargs) -> gym.vector.VectorEnv:
    """N CartPole-v1 environments stepped as one NumPy array (Gymnasium's
    vectorized CartPole, next-step autoreset)."""
    n_envs = check_int("n_envs", n_envs, low=1)
    return gym.make_vec(
        "CartPole-v1",
        num_envs=n_envs,
        vectorization_mode="vector_entry_point",
        **kwargs,
    )


def train_pg(make_envs, cfg: PGConfig, seed: int) -> PGResult:
    """Train REINFORCE (with or without a baseline) or A2C with GAE.

    ``make_envs(n)`` returns a vector environment of n copies. REINFORCE
    updates once per batch of ``n_envs`` whole episodes, with Ψ_t = G_t
    (reward to go) or G_t − V(s_t); A2C once per ``n_steps`` steps of every
    environment, with GAE advantages. Stops after ``total_steps``
    transitions.
    """
    cfg.check()
    torch.manual_seed(seed)
    envs = make_envs(cfg.n_envs)
    collector = RolloutCollector(envs, seed)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    agent = ActorCritic(obs_dim, check_discrete_vec(envs), cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(seed)
    while collector.steps < cfg.total_steps:
        if cfg.algo == "reinforce":
            r = collector.collect_episodes(
                agent, cfg.max_episode_steps, generator
            )
        else:
            r = collector.collect(agent, cfg.n_steps, generator)
        logits, values = agent(r.obs)
        log_probs, entropy = log_prob_entropy(logits, r.actions)
        if cfg.algo == "reinforce":
            g = reward_to_go(r.rewards, r.dones, cfg.gamma)
            psi = g - values.detach() if cfg.baseline else g
            loss = reinforce_loss(log_probs, psi, r.mask, cfg.n_envs)
            if cfg.baseline:  # the critic regresses on G_t
                err = (values - g) ** 2 * r.mask
                loss = loss + cfg.vf_coef * err.sum() / r.mask.sum()
        else:
            adv, ret = gae(
                r.rewards,
                r.values,
                r.next_values,
                r.terminated,
                r.dones,
                cfg.gamma,
                cfg.gae_lambda,
            )
            loss = actor_critic_loss(
                log_probs,
                entropy,
                values,
                adv,
                ret,
                r.mask,
                cfg.vf_coef,
                cfg.ent_coef,
            )["loss"]
        optimizer.zero_grad()
        loss.backward()
        if cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
        optimizer.step()
    envs.close()
    return PGResult(agent, collector.episodes)


# --- the library: stable-baselines3's GAE on the same rollout ---------------


def sb3_gae(rollout: Rollout, gamma: float, lam: float):
    """Advantages and returns of stable-baselines3's ``RolloutBuffer`` on a
    rollout of ours (same-step autoreset, every step a real transition).

    SB3 folds the time-limit bootstrap into the reward, r_t + γ V(s_final),
    and then treats every episode end alike; ``episode_starts[t]`` is
    ``dones[t − 1]``. Returns NumPy arrays (T, N).
    """
    if not bool(rollout.mask.all()):
        raise ValueError(
            "rollout must come from same-step autoreset (mask all ones); "
            "SB3's buffer has no reset steps"
        )
    import_stable_baselines3()
    from stable_baselines3.common.buffers import RolloutBuffer

    T, N, obs_dim = rollout.obs.shape
    buffer = RolloutBuffer(
        T,
        gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        gym.spaces.Discrete(2),
        device="cpu",
        gae_lambda=lam,
        gamma=gamma,
        n_envs=N,
    )
    truncated = rollout.dones * (1 - rollout.terminated)
    rewards = rollout.rewards + gamma * truncated * rollout.next_values
    starts = torch.cat([torch.zeros(1, N), rollout.dones[:-1]])
    for t in range(T):
        buffer.add(
            rollout.obs[t].numpy(),
            rollout.actions[t].numpy(),
            rewards[t].numpy(),
            starts[t].numpy(),
            rollout.values[t],
            rollout.log_probs[t],
        )
    buffer.compute_returns_and_advantage(
        rollout.next_values[-1], rollout.dones[-1].numpy()
    )
    return buffer.advantages, buffer.returns
