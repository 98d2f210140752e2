"""Tests of dlbook.rl.dqn: buffer, tabular values, targets, short runs."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from dlbook.rl.dqn import (
    DQNConfig,
    QEnsemble,
    QLearningConfig,
    ReplayBuffer,
    clip_grad_norm_per_agent,
    evaluate_ensemble,
    evaluate_policy,
    q_learning,
    sb3_dqn,
    tabular_model,
    td_target,
    train_dqn,
    value_iteration,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# --- replay buffer ---------------------------------------------------------


def fill(buffer, values):
    for v in values:
        o = np.full((1, 3), v, dtype=np.float32)
        buffer.add(o, [v % 2], [v], o + 1, [0.0])


def test_buffer_capacity_and_fifo_overwrite():
    buffer = ReplayBuffer(capacity=4, obs_shape=(3,), seed=0)
    fill(buffer, range(3))
    assert len(buffer) == 3
    fill(buffer, range(3, 6))  # 6 added, capacity 4: 0 and 1 overwritten
    assert len(buffer) == 4
    assert sorted(buffer.reward[:, 0].tolist()) == [2, 3, 4, 5]
    assert buffer.reward[0, 0] == 4 and buffer.reward[1, 0] == 5


def test_buffer_sample_shapes_and_consistency():
    buffer = ReplayBuffer(capacity=10, obs_shape=(3,), n_agents=2, seed=0)
    for v in range(7):
        o = np.array([[v] * 3, [10 + v] * 3], dtype=np.float32)
        buffer.add(o, [0, 1], [v, 10 + v], o + 1, [0.0, 1.0])
    batch = buffer.sample(5)
    assert batch["obs"].shape == (2, 5, 3)
    assert batch["next_obs"].shape == (2, 5, 3)
    for key in ("action", "reward", "terminated"):
        assert batch[key].shape == (2, 5)
    assert batch["action"].dtype == torch.int64
    # a sampled transition is one stored row, and each agent has its own
    torch.testing.assert_close(batch["obs"][..., 0], batch["reward"])
    torch.testing.assert_close(batch["next_obs"], batch["obs"] + 1)
    assert (batch["reward"][0] < 7).all() and (batch["reward"][1] >= 10).all()


def test_buffer_sampling_is_seeded():
    def draw(seed):
        buffer = ReplayBuffer(capacity=50, obs_shape=(3,), seed=seed)
        fill(buffer, range(50))
        return buffer.sample(16)["reward"]

    torch.testing.assert_close(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_buffer_rejects_bad_input():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity=0, obs_shape=(3,))
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(capacity=4, obs_shape=(3,)).sample(2)


# --- tabular: a hand-solved MDP --------------------------------------------


class TwoStates(gym.Env):
    """s0 -a0-> s0 (r 0); s0 -a1-> s1 (r 1); s1 -a0-> end (r 2);
    s1 -a1-> s0 (r 0). With γ = 0.9 cycling forever is optimal:
    V*(s0) = 1 / (1 − 0.81) = 100/19, V*(s1) = 0.9 V*(s0) = 90/19."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(2)
    P = {
        0: {0: [(1.0, 0, 0.0, False)], 1: [(1.0, 1, 1.0, False)]},
        1: {0: [(1.0, 1, 2.0, True)], 1: [(1.0, 0, 0.0, False)]},
    }

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return self.s, {}

    def step(self, a):
        _, self.s, r, terminated = self.P[self.s][a][0]
        return self.s, r, terminated, False, {}


Q_STAR = np.array([[90 / 19, 100 / 19], [2.0, 90 / 19]])


def two_states():
    return gym.wrappers.TimeLimit(TwoStates(), max_episode_steps=20)


def test_value_iteration_hand_values():
    Q, V = value_iteration(*tabular_model(two_states()), gamma=0.9)
    np.testing.assert_allclose(Q, Q_STAR, atol=1e-9)
    np.testing.assert_allclose(V, [100 / 19, 90 / 19], atol=1e-9)


def test_q_learning_converges_to_hand_values():
    cfg = QLearningConfig(steps=20_000, gamma=0.9, omega=0.6)
    Q, snapshots = q_learning(two_states(), cfg, seed=0, every=5000)
    assert len(snapshots) == 4
    errors = [np.abs(s - Q_STAR).max() for s in snapshots]
    assert errors[-1] < 0.02, errors
    assert errors[-1] < errors[0]
    assert (Q.argmax(1) == Q_STAR.argmax(1)).all()


def test_value_iteration_frozenlake_known_start_value():
    # FrozenLake 4x4 slippery, γ = 0.95: V*(start) ≈ 0.18 (the known
    # answer of this classic exercise); the goal's neighbour is highest
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    _, V = value_iteration(*tabular_model(env), gamma=0.95)
    assert 0.17 < V[0] < 0.19 and V.argmax() == 14
    assert V[[5, 7, 11, 12, 15]].max() == 0  # holes and goal: terminal


def test_tabular_bad_input():
    P, R = tabular_model(two_states())
    with pytest.raises(ValueError, match="gamma"):
        value_iteration(P, R, gamma=1.5)
    with pytest.raises(ValueError, match="gamma"):
        q_learning(two_states(), QLearningConfig(gamma=-0.1))
    with pytest.raises(TypeError, match="Discrete"):
        q_learning(gym.make("CartPole-v1"), QLearningConfig())


# --- DQN pieces --------------------------------------------------------------


def test_td_target_dqn_and_double_on_hand_numbers():
    r = torch.tensor([1.0, 0.5])
    d = torch.tensor([0.0, 1.0])
    q_target = torch.tensor([[2.0, 3.0], [4.0, 1.0]])
    q_online = torch.tensor([[5.0, 0.0], [0.0, 9.0]])
    # DQN: max of the target net: 1 + 0.9 * 3; terminal: 0.5
    torch.testing.assert_close(
        td_target(r, d, q_target, None, 0.9), torch.tensor([3.7, 0.5])
    )
    # Double: online picks a0, target scores it: 1 + 0.9 * 2
    torch.testing.assert_close(
        td_target(r, d, q_target, q_online, 0.9), torch.tensor([2.8, 0.5])
    )
    with pytest.raises(ValueError, match="gamma"):
        td_target(r, d, q_target, None, 1.01)


def test_ensemble_agent_equals_nn_linear_mlp():
    torch.manual_seed(0)
    q = QEnsemble(3, 4, 2, hidden=(8, 8))
    x = torch.randn(3, 5, 4)
    out = q(x)
    for i in range(3):
        mlp = nn.Sequential(
            nn.Linear(4, 8),
            nn.ReLU(),
            nn.Linear(8, 8),
            nn.ReLU(),
            nn.Linear(8, 2),
        )
        for layer, w, b in zip(mlp[::2], q.weights, q.biases, strict=True):
            layer.weight.data = w[i].T.clone()
            layer.bias.data = b[i, 0].clone()
        torch.testing.assert_close(out[i], mlp(x[i]))


def test_clip_grad_norm_per_agent_equals_torch():
    torch.manual_seed(0)
    q = QEnsemble(2, 4, 2, hidden=(8,))
    (q(torch.randn(2, 6, 4)) ** 2).sum().backward()
    grads = [p.grad.clone() for p in q.parameters()]
    clip_grad_norm_per_agent(q, 0.5)
    for i in range(2):
        agent = [g[i].clone().requires_grad_() for g in grads]
        for a in agent:
            a.grad = a.detach().clone()
        nn.utils.clip_grad_norm_(agent, 0.5)
        for a, p in zip(agent, q.parameters(), strict=True):
            torch.testing.assert_close(p.grad[i], a.grad, atol=1e-6, rtol=0)


def cartpole():
    return gym.make("CartPole-v1")


SHORT = DQNConfig(
    total_steps=2500,
    lr=2.3e-3,
    learning_starts=500,
    train_freq=2,
    target_update=200,
    exploration_fraction=0.3,
    buffer_size=2500,
)


def test_short_dqn_run_beats_random_policy():
    rng = np.random.default_rng(0)
    random_returns = evaluate_policy(
        lambda o: int(rng.integers(2)), cartpole(), episodes=10, seed=100
    )
    result = train_dqn(cartpole, SHORT, seeds=[0], double=[True])
    returns = evaluate_ensemble(result.q, cartpole, episodes=3, seed=100)
    # random play lasts about 22 steps; a learning agent balances far longer
    assert random_returns.mean() < 30
    assert returns.mean() > 3 * random_returns.mean(), returns


def test_seeded_dqn_run_is_deterministic():
    cfg = DQNConfig(
        total_steps=400,
        learning_starts=100,
        train_freq=1,
        target_update=50,
        buffer_size=400,
    )
    a = train_dqn(cartpole, cfg, seeds=[3])
    b = train_dqn(cartpole, cfg, seeds=[3])
    assert a.episodes == b.episodes and len(a.episodes[0]) > 5
    for p, q in zip(a.q.parameters(), b.q.parameters(), strict=True):
        assert torch.equal(p, q)


def test_dqn_bad_input():
    with pytest.raises(ValueError, match="gamma"):
        train_dqn(cartpole, DQNConfig(gamma=1.2), seeds=[0])
    with pytest.raises(ValueError, match="buffer_size"):
        train_dqn(cartpole, DQNConfig(buffer_size=32, batch_size=64), [0])
    with pytest.raises(TypeError, match="Discrete action space"):
        train_dqn(lambda: gym.make("Pendulum-v1"), DQNConfig(), seeds=[0])
    with pytest.raises(ValueError, match="double"):
        train_dqn(cartpole, DQNConfig(), seeds=[0, 1], double=[True])
    with pytest.raises(ValueError, match="seeds"):
        train_dqn(cartpole, DQNConfig(), seeds=[])
    with pytest.raises(ValueError, match="double"):
        sb3_dqn(cartpole, DQNConfig(double=True), seed=0)


def test_policy_value_hand_values():
    from dlbook.rl.dqn import policy_value

    P, R = tabular_model(two_states())
    np.testing.assert_allclose(
        policy_value(P, R, np.array([1, 1]), 0.9), [100 / 19, 90 / 19]
    )
    # always a0: stay in s0 for ever (0), from s1 end with 2
    np.testing.assert_allclose(
        policy_value(P, R, np.array([0, 0]), 0.9), [0.0, 2.0], atol=1e-12
    )
