"""From tabular Q-learning to DQN, and the pieces every RL chapter shares.

Tabular part: the Bellman optimality backup solved exactly by value iteration
on a known model (``tabular_model`` reads Gymnasium's FrozenLake table), and
Q-learning (Watkins and Dayan 1992), which learns the same values from sampled
transitions only. DQN (Mnih et al. 2015) replaces the table by a network, and
stabilizes it with a replay buffer, a target network, an ε-greedy schedule and
the Huber loss; Double DQN (van Hasselt et al. 2016) changes only the target.

The training loop is written here, not with ``dlbook.train.fit``: acting,
storing, sampling and the target-network updates interleaved step by step are
the algorithm itself, and ``fit`` trains one model on a fixed data set.

``train_dqn`` trains several independent agents (seeds, or DQN beside Double
DQN) in lockstep: each has its own network, target, optimizer state, replay
buffer and environment, and their networks are evaluated as one batched matrix
product (``QEnsemble``). Adam and the per-agent losses keep the agents
independent; batching only saves the per-call overhead of tiny networks.

Checked in ``tests/rl/test_dqn.py``: Q-learning against value iteration on a
hand-solved MDP, the targets on hand numbers, a short run that must beat a
random policy. The chapter ``book/rl/dqn.md`` compares with
stable-baselines3's ``DQN`` under the same budget.

Shared with the later RL chapters (policy gradients, PPO, DDPG):
``ReplayBuffer``, ``seed_env``, ``evaluate_policy``, ``check_discrete``,
``import_stable_baselines3``.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbook.checks import (
    check_array,
    check_int,
    check_nonempty,
    check_number,
    check_probability,
)

# --- shared pieces: seeding, checks, evaluation ---------------------------


def seed_env(env: gym.Env, seed: int) -> np.ndarray:
    """Seed an environment and its action space; return the first observation.

    Gymnasium seeds an environment's random generator only through
    ``reset(seed=...)``; its action space (used by ``sample()``) has a
    generator of its own.
    """
    seed = check_int("seed", seed, low=0)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    return obs


def check_discrete(env: gym.Env) -> int:
    """The number of actions of an environment with a Discrete action space."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise TypeError(
            "env must have a Discrete action space (one Q-value per "
            f"action), got {space}"
        )
    return int(space.n)


def evaluate_policy(
    act: Callable[[np.ndarray], int],
    env: gym.Env,
    episodes: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Returns of ``episodes`` episodes of the policy ``act(obs) -> action``.

    Episode i is reset with seed ``seed + i``, so two policies evaluated with
    the same seed face the same start states.
    """
    episodes = check_int("episodes", episodes, low=1)
    returns = np.zeros(episodes)
    for i in range(episodes):
        obs = seed_env(env, seed + i)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            returns[i] += reward
            done = terminated or truncated
    return returns


def import_stable_baselines3():
    """Import stable-baselines3 without TensorBoard.

    SB3 imports TensorBoard for optional logging, which imports TensorFlow
    where it is installed: tens of CPU seconds, and afterwards the lazy import
    of triton by ``torch.optim`` crashes the process. We never log to
    TensorBoard, so it is hidden during the import and restored after.
    """
    if "stable_baselines3" not in sys.modules:
        key = "torch.utils.tensorboard"
        saved = sys.modules.get(key, False)
        sys.modules[key] = None  # makes `import` raise ImportError
        try:
            import stable_baselines3  # noqa: F401
        finally:
            if saved is False:
                del sys.modules[key]
            else:
                sys.modules[key] = saved
    return sys.modules["stable_baselines3"]


# --- tabular: the model, value iteration, Q-learning ----------------------


def tabular_model(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """The transition tensor and expected rewards of a toy-text environment.

    Reads ``env.unwrapped.P[s][a] = [(p, s', r, terminated), ...]``. The
    returned ``P[s, a, s']`` holds only the probability of *continuing* to s'
    (transitions that terminate add nothing), so the Bellman backup is
    ``Q = R + γ P V`` with no special case for terminal states.

    Shapes:
        P: (S, A, S), R: (S, A).
    """
    table = env.unwrapped.P
    n_s, n_a = len(table), len(table[0])
    P, R = np.zeros((n_s, n_a, n_s)), np.zeros((n_s, n_a))
    for s in range(n_s):
        for a in range(n_a):
            for p, s_next, r, terminated in table[s][a]:
                R[s, a] += p * r
                if not terminated:
                    P[s, a, s_next] += p
    return P, R


def value_iteration(
    P: np.ndarray, R: np.ndarray, gamma: float, tol: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Q* and V* by iterating the Bellman optimality backup to a fixed point.

    Q(s, a) ← R(s, a) + γ Σ_s' P(s, a, s') max_a' Q(s', a'). The backup is a
    γ-contraction, so the iteration stops when a sweep changes no value by
    more than ``tol``.

    Shapes:
        P: (S, A, S), R: (S, A); returns Q: (S, A), V: (S,).
    """
    R = check_array("R", R, ndim=2)
    P = check_array("P", P, shape=(R.shape[0], R.shape[1], R.shape[0]))
    gamma = check_probability("gamma", gamma, allow_one=False)
    Q = np.zeros_like(R)
    while True:
        Q_new = R + gamma * P @ Q.max(axis=1)
        if np.abs(Q_new - Q).max() <= tol:
            return Q_new, Q_new.max(axis=1)
        Q = Q_new


def policy_value(
    P: np.ndarray, R: np.ndarray, policy: np.ndarray, gamma: float
) -> np.ndarray:
    """V^π of a deterministic policy, exactly: solve (I − γ P_π) V = R_π.

    This is the Bellman expectation equation, linear in V for a fixed π.

    Shapes:
        P: (S, A, S), R: (S, A), policy: (S,) actions; returns V: (S,).
    """
    gamma = check_probability("gamma", gamma, allow_one=False)
    states = np.arange(R.shape[0])
    P_pi, R_pi = P[states, policy], R[states, policy]
    return np.linalg.solve(np.eye(len(states)) - gamma * P_pi, R_pi)


@dataclass
class QLearningConfig:
    steps: int = 100_000  # environment steps
    gamma: float = 0.95  # discount
    epsilon: float = 1.0  # behaviour ε; 1 = uniformly random (off-policy)
    omega: float = 0.8  # step size α = 1 / n(s, a)^ω (n: visits)


def q_learning(
    env: gym.Env,
    cfg: QLearningConfig,
    seed: int = 0,
    every: int | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Tabular Q-learning (Watkins and Dayan 1992) from sampled transitions.

    Q(s, a) ← Q(s, a) + α (r + γ (1 − d) max_a' Q(s', a') − Q(s, a)),
    with d = 1 when s' is terminal. Behaviour is ε-greedy in Q; because the
    target takes the max, Q-learning learns Q* whatever the behaviour,
    provided every pair is visited infinitely often and α decays as 1 / n^ω,
    1/2 < ω ≤ 1.

    Returns the table Q (S, A) and, if ``every`` is given, a copy of Q every
    ``every`` steps.
    """
    n_a = check_discrete(env)
    if not isinstance(env.observation_space, gym.spaces.Discrete):
        raise TypeError(
            "env must have a Discrete observation space, got "
            f"{env.observation_space}"
        )
    steps = check_int("cfg.steps", cfg.steps, low=1)
    gamma = check_probability("cfg.gamma", cfg.gamma)
    epsilon = check_probability("cfg.epsilon", cfg.epsilon)
    omega = check_number(
        "cfg.omega", cfg.omega, low=0.5, high=1.0, low_open=True
    )
    n_s = int(env.observation_space.n)
    Q, visits = np.zeros((n_s, n_a)), np.zeros((n_s, n_a))
    rng = np.random.default_rng(seed)
    s, snapshots = seed_env(env, seed), []
    for t in range(1, steps + 1):
        if rng.random() < epsilon:
            a = int(rng.integers(n_a))
        else:
            a = int(Q[s].argmax())
        s_next, r, terminated, truncated, _ = env.step(a)
        visits[s, a] += 1
        target = r + gamma * (not terminated) * Q[s_next].max()
        Q[s, a] += (target - Q[s, a]) / visits[s, a] ** omega
        s = s_next
        if terminated or truncated:
            s, _ = env.reset()
        if every and t % every == 0:
            snapshots.append(Q.copy())
    return Q, snapshots


# --- DQN: replay buffer, network, target, loop ----------------------------


class ReplayBuffer:
    """A FIFO store of transitions, sampled uniformly (Lin 1992; Mnih 2015).

    It holds ``capacity`` transitions for each of ``n_agents`` independent
    agents; once full, each new transition overwrites the oldest. Sampling
    draws ``batch_size`` indices per agent, independently and with
    replacement, from the agent's own transitions.

    Args:
        capacity: transitions kept per agent.
        obs_shape: shape of one observation.
        n_agents: agents stored side by side (1 for an ordinary buffer).
        seed: seed of the sampling generator.
        action_shape: shape of one action: () for a discrete action (DQN),
            (act_dim,) for a continuous one (DDPG).
        action_dtype: int64 for discrete actions, float32 for continuous.

    Shapes:
        add: obs, next_obs (N, *obs_shape); action (N, *action_shape);
        reward, terminated (N,), with N = n_agents. sample: the same with a
        batch axis, (N, B, ...).
    """

    def __init__(
        self,
        capacity,
        obs_shape,
        n_agents=1,
        seed=0,
        action_shape=(),
        action_dtype=np.int64,
    ):
        self.capacity = check_int("capacity", capacity, low=1)
        self.n_agents = check_int("n_agents", n_agents, low=1)
        shape = (self.capacity, self.n_agents, *obs_shape)
        self.obs = np.zeros(shape, dtype=np.float32)
        self.next_obs = np.zeros(shape, dtype=np.float32)
        self.action = np.zeros((*shape[:2], *action_shape), dtype=action_dtype)
        self.reward = np.zeros(shape[:2], dtype=np.float32)
        self.terminated = np.zeros(shape[:2], dtype=np.float32)
        self.pos, self.size = 0, 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        i = self.pos
        self.obs[i], self.next_obs[i] = obs, next_obs
        self.action[i], self.reward[i] = action, reward
        self.terminated[i] = terminated
        self.pos = (self.pos + 1) % self.capacity  # FIFO: overwrite oldest
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        batch_size = check_int("batch_size", batch_size, low=1)
        if self.size == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer")
        idx = self.rng.integers(self.size, size=(self.n_agents, batch_size))
        agent = np.arange(self.n_agents)[:, None]  # (N, 1)
        return {
            name: torch.from_numpy(getattr(self, name)[idx, agent])
            for name in ("obs", "action", "reward", "next_obs", "terminated")
        }


class QEnsemble(nn.Module):
    """N independent MLPs Q(s, ·) evaluated at once by batched products.

    Each layer computes h ← relu(h Wₙ + bₙ) for every agent n with its own
    Wₙ, bₙ, initialized like ``nn.Linear`` (uniform in ±1/√fan_in). With
    N = 1 it is an ordinary MLP.

    Shapes:
        x: (N, B, obs_dim) -> Q-values (N, B, n_actions).
    """

    def __init__(self, n_agents, obs_dim, n_actions, hidden=(64, 64)):
        super().__init__()
        sizes = [obs_dim, *hidden, n_actions]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1 / math.sqrt(fan_in)
            w = torch.empty(n_agents, fan_in, fan_out).uniform_(-bound, bound)
            b = torch.empty(n_agents, 1, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(
            zip(self.weights, self.biases, strict=True)
        ):
            x = torch.baddbmm(b, x, w)  # (N, B, fan_out)
            x = x if i == last else x.relu()
        return x


def td_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None,
    gamma: float,
) -> torch.Tensor:
    """The bootstrapped target y of DQN, or of Double DQN.

    DQN:        y = r + γ (1 − d) max_a Q_target(s', a)
    Double DQN: y = r + γ (1 − d) Q_target(s', argmax_a Q_online(s', a))

    The online network chooses the action and the target network scores it,
    which removes the max's upward bias. Pass ``next_q_online=None`` for DQN.
    ``terminated`` (d) is 1 only at a true end of the episode, not at a time
    limit, where the return would have continued.

    Shapes:
        reward, terminated: (...,); next_q_*: (..., n_actions).
    """
    gamma = check_probability("gamma", gamma)
    if next_q_online is None:
        next_value = next_q_target.max(dim=-1).values
    else:
        best = next_q_online.argmax(dim=-1, keepdim=True)
        next_value = next_q_target.gather(-1, best).squeeze(-1)
    return reward + gamma * (1 - terminated) * next_value


def linear_epsilon(step: int, cfg: DQNConfig) -> float:
    """ε-greedy schedule: ε_start to ε_end linearly over the first
    ``exploration_fraction`` of ``total_steps``, then constant."""
    end = cfg.exploration_fraction * cfg.total_steps
    frac = min(1.0, step / end) if end > 0 else 1.0
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


@dataclass
class DQNConfig:
    total_steps: int = 50_000  # environment steps per agent
    gamma: float = 0.99  # discount
    lr: float = 1e-3  # Adam learning rate
    buffer_size: int = 10_000  # replay capacity (transitions)
    batch_size: int = 64  # transitions per gradient step
    learning_starts: int = 1000  # steps of acting before the first update
    train_freq: int = 4  # environment steps between gradient steps
    gradient_steps: int = 1  # gradient steps each time
    target_update: int = 500  # steps between copies online -> target
    eps_start: float = 1.0  # ε at step 0
    eps_end: float = 0.05  # ε after the schedule
    exploration_fraction: float = 0.1  # share of total_steps to decay ε
    max_grad_norm: float = 10.0  # per-agent gradient-norm clip (as SB3)
    hidden: tuple[int, ...] = (64, 64)  # MLP widths
    double: bool = False  # Double DQN targets


def check_dqn_config(cfg: DQNConfig) -> None:
    check_int("cfg.total_steps", cfg.total_steps, low=1)
    check_probability("cfg.gamma", cfg.gamma)
    check_number("cfg.lr", cfg.lr, low=0, low_open=True)
    check_int("cfg.batch_size", cfg.batch_size, low=1)
    if check_int("cfg.buffer_size", cfg.buffer_size, low=1) < cfg.batch_size:
        raise ValueError(
            "cfg.buffer_size must be >= cfg.batch_size "
            f"({cfg.batch_size}), got {cfg.buffer_size}"
        )
    check_int("cfg.learning_starts", cfg.learning_starts, low=0)
    check_int("cfg.train_freq", cfg.train_freq, low=1)
    check_int("cfg.gradient_steps", cfg.gradient_steps, low=1)
    check_int("cfg.target_update", cfg.target_update, low=1)
    check_probability("cfg.eps_start", cfg.eps_start)
    check_probability("cfg.eps_end", cfg.eps_end)
    check_probability("cfg.exploration_fraction", cfg.exploration_fraction)
    check_number("cfg.max_grad_norm", cfg.max_grad_norm, low=0, low_open=True)
    check_nonempty("cfg.hidden", cfg.hidden)


@dataclass
class DQNResult:
    q: QEnsemble  # the trained online networks, one per agent
    episodes: list[list[tuple[int, float]]] = field(default_factory=list)
    # per agent: (environment step at the episode's end, its return)


def clip_grad_norm_per_agent(q: QEnsemble, max_norm: float) -> None:
    """Scale each agent's gradient to norm ≤ max_norm, as
    ``nn.utils.clip_grad_norm_`` would on that agent's network alone."""
    grads = [p.grad for p in q.parameters()]
    sq = sum(g.pow(2).flatten(1).sum(1) for g in grads)  # (N,)
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))


def dqn_update(q, q_target, optimizer, batch, cfg, double) -> torch.Tensor:
    """One gradient step of every agent on the Huber loss of the TD error.

    L = mean over the batch of huber(Q(s, a) − y), y from ``td_target``
    (no gradient through y). ``double``: (N,) bool, Double DQN per agent.
    Returns the per-agent loss (N,).
    """
    with torch.no_grad():
        next_t = q_target(batch["next_obs"])  # (N, B, A)
        y_dqn = td_target(
            batch["reward"], batch["terminated"], next_t, None, cfg.gamma
        )
        y_double = td_target(
            batch["reward"],
            batch["terminated"],
            next_t,
            q(batch["next_obs"]),
            cfg.gamma,
        )
        y = torch.where(double[:, None], y_double, y_dqn)  # (N, B)
    q_sa = q(batch["obs"]).gather(-1, batch["action"][..., None])
    loss = F.smooth_l1_loss(q_sa.squeeze(-1), y, reduction="none").mean(1)
    optimizer.zero_grad()
    loss.sum().backward()  # agents share no parameters: independent grads
    clip_grad_norm_per_agent(q, cfg.max_grad_norm)
    optimizer.step()
    return loss.detach()


def train_dqn(
    make_env: Callable[[], gym.Env],
    cfg: DQNConfig,
    seeds: Sequence[int],
    double: Sequence[bool] | None = None,
) -> DQNResult:
    """Train one DQN agent per seed, in lockstep (Mnih et al. 2015).

    Each step, every agent acts ε-greedily in its own environment, stores the
    transition in its replay buffer, and every ``train_freq`` steps (after
    ``learning_starts``) takes ``gradient_steps`` gradient steps; every
    ``target_update`` steps the target network is set to the online one.

    Args:
        make_env: builds one environment (Discrete actions, Box observations).
        cfg: hyper-parameters; ``cfg.double`` unless ``double`` is given.
        seeds: one seed per agent (environment, network initialization and
            exploration).
        double: one flag per agent: Double DQN targets for that agent.
    """
    check_dqn_config(cfg)
    seeds = [
        check_int("seed", s, low=0) for s in check_nonempty("seeds", seeds)
    ]
    n = len(seeds)
    double = [cfg.double] * n if double is None else list(double)
    if len(double) != n:
        raise ValueError(
            f"double must have one flag per seed ({n}), got {len(double)}"
        )
    envs = [make_env() for _ in seeds]
    n_actions = check_discrete(envs[0])
    obs = np.stack([seed_env(e, s) for e, s in zip(envs, seeds, strict=True)])
    obs_dim = obs.shape[1]
    torch.manual_seed(seeds[0])
    q = QEnsemble(n, obs_dim, n_actions, cfg.hidden)
    q_target = copy.deepcopy(q).requires_grad_(False)
    optimizer = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    buffer = ReplayBuffer(cfg.buffer_size, (obs_dim,), n, seed=seeds[0])
    rng = np.random.default_rng(seeds)
    flags = torch.tensor(double)
    result = DQNResult(q, [[] for _ in seeds])
    ep_return = np.zeros(n)
    for step in range(1, cfg.total_steps + 1):
        with torch.no_grad():
            greedy = q(torch.from_numpy(obs).float()[:, None])[:, 0]
        explore = rng.random(n) < linear_epsilon(step - 1, cfg)
        action = np.where(
            explore, rng.integers(n_actions, size=n), greedy.argmax(-1).numpy()
        )
        next_obs, starts = np.empty_like(obs), np.empty_like(obs)
        reward, terminated = np.zeros(n), np.zeros(n)
        for i, env in enumerate(envs):
            o, reward[i], terminated[i], trunc, _ = env.step(int(action[i]))
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
                dqn_update(
                    q,
                    q_target,
                    optimizer,
                    buffer.sample(cfg.batch_size),
                    cfg,
                    flags,
                )
        if step % cfg.target_update == 0:
            q_target.load_state_dict(q.state_dict())
    return result


def evaluate_ensemble(
    q: QEnsemble,
    make_env: Callable[[], gym.Env],
    episodes: int = 10,
    seed: int = 10_000,
) -> np.ndarray:
    """Greedy returns of every agent of ``q``: (N, episodes).

    Uses ``evaluate_policy`` for each agent, with the same start seeds.
    """
    return evaluate_agents(
        q, lambda out: int(out.argmax()), make_env, episodes, seed
    )


def evaluate_agents(
    ensemble: nn.Module,
    to_action: Callable[[torch.Tensor], object],
    make_env: Callable[[], gym.Env],
    episodes: int = 10,
    seed: int = 10_000,
) -> np.ndarray:
    """Returns of every agent of an ensemble of MLPs: (N, episodes).

    Agent i acts by ``to_action(agent_forward(ensemble, i, obs))``: the
    greedy action of a Q-network (``evaluate_ensemble``), the scaled
    deterministic action of an actor (``dlbook.rl.ddpg.evaluate_actors``).
    Every agent plays ``episodes`` episodes from the same start seeds, with
    ``evaluate_policy``, without gradients.
    """
    out = []
    with torch.no_grad():
        for i in range(ensemble.weights[0].shape[0]):

            def act(obs, i=i):
                x = torch.as_tensor(obs, dtype=torch.float32)[None, None]
                return to_action(agent_forward(ensemble, i, x))

            out.append(evaluate_policy(act, make_env(), episodes, seed))
    return np.stack(out)


def agent_forward(
    ensemble: nn.Module, i: int, x: torch.Tensor
) -> torch.Tensor:
    """Agent i's network alone, on x: (1, B, obs_dim) -> (1, B, out).

    ``ensemble`` holds stacked ``weights`` (N, in, out) and ``biases``
    (N, 1, out), ReLU between layers (``QEnsemble``, the actors of
    ``dlbook.rl.ddpg``).
    """
    last = len(ensemble.weights) - 1
    for j, (w, b) in enumerate(
        zip(ensemble.weights, ensemble.biases, strict=True)
    ):
        x = torch.baddbmm(b[i : i + 1], x, w[i : i + 1])
        x = x if j == last else x.relu()
    return x


# --- the library: stable-baselines3's DQN with the same settings -----------


def sb3_dqn(
    make_env: Callable[[], gym.Env], cfg: DQNConfig, seed: int
) -> tuple[object, list[tuple[int, float]]]:
    """Train stable-baselines3's ``DQN`` with the hyper-parameters of ``cfg``.

    Same budget (``total_steps``), network (``hidden``, ReLU), optimizer
    (Adam, ``lr``), replay (``buffer_size``, ``batch_size``,
    ``learning_starts``), update cadence (``train_freq``, ``gradient_steps``,
    hard target copies every ``target_update`` steps), ε schedule, Huber loss
    and gradient clipping. SB3 has no Double DQN, so ``cfg.double`` must be
    False. Returns the model and its episodes as (step, return).
    """
    check_dqn_config(cfg)
    if cfg.double:
        raise ValueError(
            "cfg.double must be False: SB3's DQN has no Double DQN, got True"
        )
    sb3 = import_stable_baselines3()
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(make_env())
    check_discrete(env)
    seed_env(env, seed)
    model = sb3.DQN(
        "MlpPolicy",
        env,
        learning_rate=cfg.lr,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        tau=1.0,
        gamma=cfg.gamma,
        train_freq=cfg.train_freq,
        gradient_steps=cfg.gradient_steps,
        target_update_interval=cfg.target_update,
        exploration_fraction=cfg.exploration_fraction,
        exploration_initial_eps=cfg.eps_start,
        exploration_final_eps=cfg.eps_end,
        max_grad_norm=cfg.max_grad_norm,
        policy_kwargs=dict(net_arch=list(cfg.hidden)),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(cfg.total_steps)
    ends = np.cumsum(env.get_episode_lengths())
    returns = env.get_episode_rewards()
    return model, [
        (int(s), float(r)) for s, r in zip(ends, returns, strict=True)
    ]
