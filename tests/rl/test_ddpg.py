"""Tests of dlbook.rl.ddpg: targets and losses by hand, the deterministic
policy gradient, soft updates, action bounds, bad input, determinism and a
short run that must learn."""

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from dlbook.rl.ddpg import (
    Actor,
    Critics,
    DDPGConfig,
    actor_loss,
    check_box,
    critic_loss,
    critic_target,
    evaluate_actors,
    sb3_ddpg,
    sb3_update_gap,
    scale_action,
    soft_update,
    target_action,
    td3_config,
    train_ddpg,
)
from dlbook.rl.dqn import ReplayBuffer, evaluate_policy

pytestmark = pytest.mark.usefixtures("one_thread")


def pendulum():
    return gym.make("Pendulum-v1")


# --- targets and losses on hand numbers --------------------------------------


def test_critic_target_takes_min_over_critics_and_stops_at_termination():
    reward = torch.tensor([1.0, 2.0])
    terminated = torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[3.0, 5.0], [4.0, 1.0]])  # (K=2, B=2)
    y = critic_target(reward, terminated, next_q, gamma=0.5)
    # min_k: [3, 1]; y = [1 + 0.5 * 3, 2 + 0 (terminated)]
    torch.testing.assert_close(y, torch.tensor([2.5, 2.0]))
    # one critic (DDPG): its own value
    y1 = critic_target(reward, terminated, next_q[1:], gamma=0.5)
    torch.testing.assert_close(y1, torch.tensor([3.0, 2.0]))


def test_critic_loss_sums_the_critics_and_does_not_move_y():
    q = torch.tensor([[[1.0, 2.0]], [[0.0, 4.0]]], requires_grad=True)
    y = torch.tensor([[2.0, 2.0]], requires_grad=True)  # (N=1, B=2)
    loss = critic_loss(q, y)
    # critic 1: ((1 − 2)² + 0) / 2 = 0.5; critic 2: (4 + 4) / 2 = 4
    torch.testing.assert_close(loss, torch.tensor([4.5]))
    loss.sum().backward()
    assert y.grad is None
    # d/dq of mean (q − y)² = 2 (q − y) / B
    expected = torch.tensor([[[-1.0, 0.0]], [[-2.0, 2.0]]])
    torch.testing.assert_close(q.grad, expected)


def test_actor_loss_gives_the_deterministic_policy_gradient():
    # μ_θ(s) = θ s and Q(s, a) = −(a − 2 s)²: ∇_θ J = mean ∇_a Q · s
    theta = torch.tensor(0.5, requires_grad=True)
    s = torch.tensor([[1.0, 2.0]])  # (N=1, B=2)
    a = theta * s
    loss = actor_loss(-((a - 2 * s) ** 2))
    loss.sum().backward()
    # ∇_a Q = −2 (a − 2 s) = [3, 6]; times s: [3, 12]; mean 7.5
    assert theta.grad.item() == pytest.approx(-7.5)
    assert actor_loss(torch.tensor([[1.0, 3.0]])).item() == -2.0


def test_soft_update_is_polyak_averaging():
    source, target = nn.Linear(2, 2), nn.Linear(2, 2)
    nn.init.ones_(source.weight), nn.init.zeros_(target.weight)
    soft_update(target, source, tau=0.1)
    torch.testing.assert_close(target.weight, torch.full((2, 2), 0.1))
    soft_update(target, source, tau=0.1)  # 0.1 + 0.1 (1 − 0.1)
    torch.testing.assert_close(target.weight, torch.full((2, 2), 0.19))
    soft_update(target, source, tau=1.0)  # τ = 1: a hard copy
    torch.testing.assert_close(target.bias, source.bias)
    assert not source.weight.grad and target.weight.requires_grad


@pytest.mark.parametrize("tau", [0.0, -0.1, 1.5, float("nan")])
def test_soft_update_rejects_bad_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        soft_update(nn.Linear(2, 2), nn.Linear(2, 2), tau)


# --- action bounds and target smoothing --------------------------------------


def test_scale_action_maps_tanh_range_onto_the_bounds():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    a = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(
        scale_action(a, low, high), [[-2, 0], [0, 0.5], [2, 1]]
    )


def test_actor_stays_in_bounds_and_critics_are_independent():
    actor = Actor(3, obs_dim=4, act_dim=2)
    big = 1e4 * torch.randn(3, 5, 4)
    a = actor(big)
    assert a.shape == (3, 5, 2) and a.abs().max() <= 1.0
    critics = Critics(3, 2, obs_dim=4, act_dim=2)
    q = critics(big / 1e4, a)
    assert q.shape == (2, 3, 5)
    assert not torch.allclose(q[0], q[1])  # two critics, two initializations


def test_target_action_noise_is_clipped_and_bounded():
    actor = Actor(1, obs_dim=3, act_dim=1)
    obs = torch.randn(1, 500, 3)
    gen = torch.Generator().manual_seed(0)
    mu = actor(obs)
    torch.testing.assert_close(target_action(actor, obs, 0.0, 0.5, gen), mu)
    smooth = target_action(actor, obs, 100.0, 0.5, gen)
    assert (smooth - mu).abs().max() <= 0.5 + 1e-6
    assert smooth.abs().max() <= 1.0 and not torch.allclose(smooth, mu)


def test_replay_buffer_stores_continuous_actions():
    buffer = ReplayBuffer(
        10, (3,), 2, action_shape=(2,), action_dtype=np.float32
    )
    obs = np.zeros((2, 3), dtype=np.float32)
    action = np.array([[0.5, -0.5], [0.25, 1.0]])
    buffer.add(obs, action, [1.0, 2.0], obs, [0.0, 0.0])
    batch = buffer.sample(4)
    assert batch["action"].shape == (2, 4, 2)
    assert batch["action"].dtype == torch.float32
    torch.testing.assert_close(
        batch["action"][:, 0], torch.tensor(action, dtype=torch.float32)
    )


# --- bad input ---------------------------------------------------------------


def test_discrete_action_space_is_rejected():
    with pytest.raises(TypeError, match="Box action space"):
        check_box(gym.make("CartPole-v1"))
    cfg = DDPGConfig(total_steps=10, batch_size=4, buffer_size=10)
    with pytest.raises(TypeError, match="Box action space"):
        train_ddpg(lambda: gym.make("CartPole-v1"), cfg, [0])


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(gamma=1.5), "cfg.gamma"),
        (dict(gamma=-0.1), "cfg.gamma"),
        (dict(gamma=float("nan")), "cfg.gamma"),
        (dict(tau=0.0), "cfg.tau"),
        (dict(tau=1.01), "cfg.tau"),
        (dict(buffer_size=100, batch_size=256), "cfg.buffer_size"),
        (dict(total_steps=0), "cfg.total_steps"),
        (dict(noise_std=-0.1), "cfg.noise_std"),
        (dict(policy_delay=0), "cfg.policy_delay"),
        (dict(train_freq=0), "cfg.train_freq"),
        (dict(gradient_steps=0), "cfg.gradient_steps"),
        (dict(hidden=()), "cfg.hidden"),
    ],
)
def test_bad_config_is_rejected_by_name(change, name):
    cfg = replace(DDPGConfig(total_steps=10), **change)
    with pytest.raises(ValueError, match=name):
        train_ddpg(pendulum, cfg, [0])


def test_sb3_rejects_two_learning_rates():
    cfg = DDPGConfig(total_steps=10, actor_lr=1e-3, critic_lr=1e-4)
    with pytest.raises(ValueError, match="cfg.actor_lr"):
        sb3_ddpg(pendulum, cfg, 0)


# --- runs --------------------------------------------------------------------


def test_seeded_run_is_deterministic():
    cfg = DDPGConfig(
        total_steps=300,
        batch_size=32,
        learning_starts=100,
        train_freq=50,
        gradient_steps=50,
    )
    runs = [train_ddpg(pendulum, td3_config(cfg), [3, 4]) for _ in range(2)]
    for p, q in zip(
        runs[0].actor.parameters(), runs[1].actor.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert runs[0].episodes == runs[1].episodes
    assert len(runs[0].episodes[0]) == 1  # one 200-step episode each


def test_short_run_beats_a_random_policy():
    # 3000 steps is short of solving Pendulum (about −150), but enough for a
    # working DDPG to swing up from some starts
    cfg = DDPGConfig(total_steps=3000, batch_size=64)
    result = train_ddpg(pendulum, cfg, [0])
    ours = evaluate_actors(result, pendulum, episodes=10).mean()
    rng = np.random.default_rng(0)
    random = evaluate_policy(
        lambda obs: rng.uniform(-2, 2, size=1), pendulum(), 10, seed=10_000
    ).mean()
    # random play scores about −1200, with a standard deviation of the mean
    # of 10 episodes near 100: a margin of 400 is far outside chance
    assert random < -900 and ours > random + 400, (ours, random)


def test_sb3_gets_our_settings():
    cfg = DDPGConfig(total_steps=150, batch_size=32, hidden=(16, 16))
    model, episodes = sb3_ddpg(pendulum, cfg, 0)
    assert type(model).__name__ == "DDPG" and episodes == []
    model, _ = sb3_ddpg(pendulum, td3_config(cfg), 0)
    assert type(model).__name__ == "TD3"
    assert (model.policy_delay, model.target_policy_noise) == (2, 0.2)
    assert model.critic.n_critics == 2 and model.batch_size == 32
    assert model.actor.mu[0].out_features == 16


# --- one update equals stable-baselines3's -----------------------------------


@pytest.mark.parametrize("td3", [False, True])
def test_updates_equal_sb3s_on_the_same_batch(td3):
    cfg = DDPGConfig(batch_size=16, hidden=(8, 8), gamma=0.9, tau=0.1)
    if td3:  # clipped double Q and the delay; smoothing noise is random
        cfg = replace(td3_config(cfg), target_noise=0.0)
    assert sb3_update_gap(cfg, n_updates=3) < 1e-5
    # the comparison sees a wrong discount, or a missing delay
    wrong = replace(cfg, gamma=0.5)
    assert sb3_update_gap(cfg, n_updates=3, ours_cfg=wrong) > 1e-4
    if td3:
        wrong = replace(cfg, policy_delay=1)
        assert sb3_update_gap(cfg, n_updates=3, ours_cfg=wrong) > 1e-4


def test_sb3_update_gap_refuses_smoothing_noise():
    with pytest.raises(ValueError, match="target_noise"):
        sb3_update_gap(td3_config(DDPGConfig()))
