"""Tests of dlbook.rl.policy_gradient: GAE against SB3, losses, runs."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from dlbook.rl.dqn import evaluate_policy
from dlbook.rl.policy_gradient import (
    ActorCritic,
    PGConfig,
    RolloutCollector,
    actor_critic_loss,
    episode_return,
    gae,
    log_prob_entropy,
    make_cartpole_envs,
    reinforce_loss,
    reward_to_go,
    sb3_gae,
    train_pg,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def same_step_envs(n=4, limit=20):
    return gym.make_vec(
        "CartPole-v1",
        num_envs=n,
        vectorization_mode="sync",
        vector_kwargs=dict(autoreset_mode=AutoresetMode.SAME_STEP),
        max_episode_steps=limit,
    )


def rollout(envs, steps, seed=0):
    torch.manual_seed(seed)
    agent = ActorCritic(4, 2, hidden=(16,))
    collector = RolloutCollector(envs, seed)
    gen = torch.Generator().manual_seed(seed)
    return agent, collector.collect(agent, steps, gen)


# --- GAE ------------------------------------------------------------------


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0)])
def test_gae_equals_sb3_with_ends_and_time_limits(gamma, lam):
    _, r = rollout(same_step_envs(limit=20), 70)
    truncated = r.dones * (1 - r.terminated)
    # the rollout must exercise both kinds of episode end
    assert r.terminated.sum() >= 2 and truncated.sum() >= 2
    adv, ret = gae(
        r.rewards, r.values, r.next_values, r.terminated, r.dones, gamma, lam
    )
    sb3_adv, sb3_ret = sb3_gae(r, gamma, lam)
    torch.testing.assert_close(adv, torch.from_numpy(sb3_adv))
    torch.testing.assert_close(ret, torch.from_numpy(sb3_ret))


def test_gae_hand_values():
    # one environment, 3 steps: a time limit after step 1, then a true end
    r = torch.tensor([[1.0], [2.0], [4.0]])
    v = torch.tensor([[0.5], [1.0], [2.0]])
    v_next = torch.tensor([[3.0], [10.0], [7.0]])  # 3.0: V(final state)
    done = torch.tensor([[1.0], [0.0], [1.0]])
    term = torch.tensor([[0.0], [0.0], [1.0]])
    g, lam = 0.5, 0.5
    adv, ret = gae(r, v, v_next, term, done, g, lam)
    d0 = 1 + g * 3 - 0.5  # truncated: bootstraps from the final state
    d2 = 4 - 2.0  # terminated: no bootstrap
    d1 = 2 + g * 10 - 1.0
    expected = torch.tensor([[d0], [d1 + g * lam * d2], [d2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + v)
    # λ = 0 is the one-step TD error
    adv0, _ = gae(r, v, v_next, term, done, g, 0.0)
    torch.testing.assert_close(adv0, torch.tensor([[d0], [d1], [d2]]))


def test_reward_to_go_and_episode_return_by_hand():
    r = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    done = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    g = 0.5
    expected = torch.tensor([[1 + g * 2, 1.0], [2.0, 1 + g * 1], [3.0, 1.0]])
    torch.testing.assert_close(reward_to_go(r, done, g), expected)
    g0 = torch.tensor([[2.0, 1.0], [2.0, 1.5], [3.0, 1.5]])
    torch.testing.assert_close(episode_return(r, done, g), g0)


# --- losses -----------------------------------------------------------------


def test_reinforce_loss_value_and_gradient_by_hand():
    # a state-free policy: logits θ = (0, 0) -> π = (1/2, 1/2)
    theta = torch.zeros(2, requires_grad=True)
    actions = torch.tensor([[0, 1], [1, 1]])  # (T=2, N=2)
    logits = theta.expand(2, 2, 2)
    log_p, entropy = log_prob_entropy(logits, actions)
    torch.testing.assert_close(log_p, torch.full((2, 2), np.log(0.5)))
    torch.testing.assert_close(entropy, torch.full((2, 2), np.log(2.0)))
    psi = torch.tensor([[3.0, 1.0], [2.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # last step not real
    loss = reinforce_loss(log_p, psi, mask, n_episodes=2)
    assert loss.item() == pytest.approx(-(3 + 1 + 2) * np.log(0.5) / 2)
    loss.backward()
    # ∇θ log π(a) = onehot(a) − π; the masked step contributes nothing
    grad = np.zeros(2)
    for a, w in ((0, 3.0), (1, 1.0), (1, 2.0)):
        grad += w * (np.eye(2)[a] - 0.5)
    torch.testing.assert_close(theta.grad, torch.tensor(-grad / 2).float())


def test_actor_critic_loss_pieces_by_hand():
    log_p = torch.tensor([[-1.0, -2.0]])
    ent = torch.tensor([[0.5, 0.7]])
    values = torch.tensor([[1.0, 2.0]])
    adv = torch.tensor([[2.0, -1.0]])
    ret = torch.tensor([[3.0, 2.5]])
    mask = torch.ones(1, 2)
    out = actor_critic_loss(log_p, ent, values, adv, ret, mask, 0.5, 0.01)
    assert out["policy"].item() == pytest.approx(-(-2.0 + 2.0) / 2)
    assert out["value"].item() == pytest.approx((4 + 0.25) / 2)
    assert out["entropy"].item() == pytest.approx(0.6)
    total = 0.0 + 0.5 * 2.125 - 0.01 * 0.6
    assert out["loss"].item() == pytest.approx(total)


# --- rollouts ---------------------------------------------------------------


def test_next_step_autoreset_masks_the_reset_step():
    agent, r = rollout(make_cartpole_envs(3), 80)
    t, i = map(int, torch.nonzero(r.dones)[0])
    assert r.mask[t + 1, i] == 0 and r.rewards[t + 1, i] == 0
    assert r.mask.sum() == r.mask.numel() - r.dones[:-1].sum()
    # the step that ended the episode bootstraps from its own final state
    with torch.no_grad():
        final = agent(r.obs[t + 1, i][None])[1][0]
    torch.testing.assert_close(r.next_values[t, i], final)


def test_same_step_rollout_values_the_final_state_at_a_time_limit():
    agent, r = rollout(same_step_envs(n=2, limit=5), 12)
    assert r.mask.all() and r.dones[4].all()  # both cut at step 5
    assert not r.terminated[4].any()
    # after the cut the next observation is a fresh start: a different state
    assert not torch.allclose(r.next_values[4], r.values[5])


def test_collect_episodes_gives_one_whole_episode_per_environment():
    torch.manual_seed(0)
    agent = ActorCritic(4, 2, hidden=(16,))
    collector = RolloutCollector(make_cartpole_envs(5), 0)
    r = collector.collect_episodes(agent, 500)
    assert (r.dones.sum(0) == 1).all()
    lengths = r.mask.sum(0)
    # the mask is a prefix that ends at the episode's end
    for i in range(5):
        n = int(lengths[i])
        assert r.mask[:n, i].all() and r.dones[n - 1, i] == 1
    returns = [g for _, g in collector.episodes]
    torch.testing.assert_close(torch.tensor(returns), lengths)


# --- training ---------------------------------------------------------------


def test_short_a2c_run_beats_a_random_policy_by_a_margin():
    cfg = PGConfig(algo="a2c", total_steps=12_000, n_envs=16, lr=3e-3)
    agent = train_pg(make_cartpole_envs, cfg, seed=0).agent
    env = gym.make("CartPole-v1")
    learned = evaluate_policy(agent.greedy, env, 5, seed=100).mean()
    coin = np.random.default_rng(0)
    random = evaluate_policy(lambda o: int(coin.integers(2)), env, 20, 100)
    assert learned > 3 * random.mean(), (learned, random.mean())


@pytest.mark.parametrize("algo", ["reinforce", "a2c"])
def test_seeded_runs_give_the_same_returns(algo):
    cfg = PGConfig(algo=algo, total_steps=1500, n_envs=4)
    a = train_pg(make_cartpole_envs, cfg, seed=3).episodes
    b = train_pg(make_cartpole_envs, cfg, seed=3).episodes
    assert a == b and len(a) > 5


# --- bad input ---------------------------------------------------------


def test_continuous_actions_are_refused():
    envs = gym.make_vec("Pendulum-v1", num_envs=2)
    with pytest.raises(TypeError, match="Discrete action space"):
        RolloutCollector(envs, 0)
    with pytest.raises(TypeError, match="Discrete action space"):
        train_pg(
            lambda n: gym.make_vec("Pendulum-v1", num_envs=n),
            PGConfig(total_steps=10),
            0,
        )


@pytest.mark.parametrize(
    "gamma, lam", [(1.5, 0.9), (-0.1, 0.9), (0.9, 1.2), (0.9, float("nan"))]
)
def test_gamma_and_lambda_outside_the_unit_interval_are_refused(gamma, lam):
    x = torch.zeros(3, 2)
    name = "gamma" if not 0 <= gamma <= 1 else "lam"
    with pytest.raises(ValueError, match=name):
        gae(x, x, x, x, x, gamma, lam)
    with pytest.raises(ValueError, match="cfg.g"):
        PGConfig(gamma=gamma, gae_lambda=lam).check()


def test_mismatched_shapes_and_bad_settings_are_refused():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="same shape"):
        gae(x, x, torch.zeros(3, 1), x, x, 0.9, 0.9)
    with pytest.raises(ValueError, match="n_episodes"):
        reinforce_loss(x, x, x, n_episodes=0)
    with pytest.raises(ValueError, match="cfg.algo"):
        PGConfig(algo="ppo").check()
    _, r = rollout(make_cartpole_envs(2), 40)  # next-step: reset steps
    with pytest.raises(ValueError, match="same-step"):
        sb3_gae(r, 0.99, 0.95)
