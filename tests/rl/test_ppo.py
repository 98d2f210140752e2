"""Tests of dlbook.rl.ppo: loss pieces by hand, advantage normalization,
the Gaussian policy, bad input and a short run that must learn."""

import math
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from dlbook.rl.dqn import evaluate_policy
from dlbook.rl.policy_gradient import make_cartpole_envs
from dlbook.rl.ppo import (
    GaussianActorCritic,
    PPOConfig,
    evaluate_actions,
    make_pendulum_envs,
    normalize_advantages,
    orthogonal_init,
    ppo_loss,
    train_ppo,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def loss_of(ratio, adv, eps=0.2):
    """ppo_loss of one sample with the given ratio and advantage."""
    log_p = torch.tensor([math.log(ratio)], requires_grad=True)
    zero = torch.zeros(1)
    out = ppo_loss(
        log_p, zero, torch.tensor([adv]), zero, zero, zero, clip_eps=eps
    )
    out["policy"].backward()
    return out, log_p.grad.item()


# --- the clipped objective ---------------------------------------------------


@pytest.mark.parametrize(
    "ratio, adv, objective, moves",
    [
        # A > 0: the ratio is capped at 1 + ε, no gradient above it
        (1.5, 2.0, 1.2 * 2.0, False),
        (1.1, 2.0, 1.1 * 2.0, True),
        (0.5, 2.0, 0.5 * 2.0, True),  # below 1 − ε: unclipped, still pushed
        # A < 0: the ratio is floored at 1 − ε, no gradient below it
        (0.5, -2.0, 0.8 * -2.0, False),
        (0.9, -2.0, 0.9 * -2.0, True),
        (1.5, -2.0, 1.5 * -2.0, True),  # above 1 + ε: the min keeps it
    ],
)
def test_clipped_objective_on_both_sides(ratio, adv, objective, moves):
    out, grad = loss_of(ratio, adv)
    assert out["policy"].item() == pytest.approx(-objective, rel=1e-6)
    # d(−r A)/d log π = −r A where the unclipped term is the min, else 0
    assert grad == pytest.approx(-ratio * adv if moves else 0.0, rel=1e-6)
    outside = abs(ratio - 1) > 0.2
    assert out["clip_frac"].item() == float(outside)


def test_loss_pieces_and_kl_by_hand():
    log_p = torch.log(torch.tensor([1.0, 1.3, 0.7, 1.0]))
    old = torch.zeros(4)
    adv = torch.tensor([1.0, 1.0, 1.0, -3.0])
    values = torch.tensor([0.0, 1.0, 2.0, 3.0])
    returns = torch.tensor([1.0, 1.0, 0.0, 5.0])
    entropy = torch.tensor([0.6, 0.4, 0.5, 0.5])
    out = ppo_loss(
        log_p,
        old,
        adv,
        values,
        returns,
        entropy,
        0.2,
        vf_coef=0.5,
        ent_coef=0.01,
    )
    # min(rA, clip(r)A): 1, min(1.3, 1.2) = 1.2, 0.7, −3
    policy = -(1 + 1.2 + 0.7 - 3) / 4
    value = (1 + 0 + 4 + 4) / 4
    assert out["policy"].item() == pytest.approx(policy)
    assert out["value"].item() == pytest.approx(value)
    assert out["entropy"].item() == pytest.approx(0.5)
    total = policy + 0.5 * value - 0.01 * 0.5
    assert out["loss"].item() == pytest.approx(total)
    r = np.array([1.0, 1.3, 0.7, 1.0])
    kl = np.mean((r - 1) - np.log(r))
    assert out["approx_kl"].item() == pytest.approx(kl, rel=1e-5)
    assert out["clip_frac"].item() == pytest.approx(0.5)


def test_value_clipping_takes_the_larger_error():
    values = torch.tensor([1.0, 1.0])
    old = torch.tensor([0.0, 0.0])
    returns = torch.tensor([0.0, 3.0])
    z = torch.zeros(2)
    out = ppo_loss(z, z, z, values, returns, z, old_values=old, clip_vf=0.5)
    # V_clip = 0.5: max(1, 0.25) = 1 and max(4, 6.25) = 6.25
    assert out["value"].item() == pytest.approx((1 + 6.25) / 2)


# --- advantage normalization -------------------------------------------------


def test_normalize_advantages():
    adv = torch.tensor([1.0, 2.0, 3.0, 6.0])
    out = normalize_advantages(adv, eps=0.0)
    expected = (adv - 3.0) / np.std([1, 2, 3, 6], ddof=1)
    torch.testing.assert_close(out, expected)
    assert out.mean().abs() < 1e-6 and out.std().item() == pytest.approx(1)
    # invariant to the reward scale
    torch.testing.assert_close(normalize_advantages(100 * adv), out)


def test_normalize_advantages_rejects_a_single_value():
    with pytest.raises(ValueError, match="advantages"):
        normalize_advantages(torch.tensor([1.0]))


# --- the Gaussian policy -----------------------------------------------------


def test_gaussian_log_prob_and_entropy_by_hand():
    torch.manual_seed(0)
    agent = GaussianActorCritic(3, 2, hidden=(8,))
    with torch.no_grad():
        agent.log_std.copy_(torch.tensor([0.0, math.log(2.0)]))
    obs = torch.randn(5, 3)
    actions = torch.randn(5, 2)
    log_p, entropy, value = evaluate_actions(agent, obs, actions)
    mean = agent.actor(obs).detach()
    sd = torch.tensor([1.0, 2.0])
    z = (actions - mean) / sd
    expected = (-0.5 * z**2 - sd.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(log_p.detach(), expected)
    h = (0.5 + 0.5 * math.log(2 * math.pi) + sd.log()).sum()
    torch.testing.assert_close(entropy.detach(), h.expand(5))
    assert value.shape == (5,)


def test_orthogonal_init_gains():
    torch.manual_seed(0)
    agent = orthogonal_init(GaussianActorCritic(4, 1, hidden=(64, 64)))
    w = agent.actor[0].weight  # (64, 4): orthogonal columns × √2
    torch.testing.assert_close(w.T @ w, 2 * torch.eye(4), atol=1e-4, rtol=0)
    assert agent.actor[0].bias.abs().max() == 0
    out = agent.actor[-1].weight  # (1, 64): one orthonormal row × 0.01
    assert out.norm().item() == pytest.approx(0.01, rel=1e-4)
    assert agent.critic[-1].weight.norm().item() == pytest.approx(1.0, 1e-4)


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(gamma=1.5), "cfg.gamma"),
        (dict(gamma=-0.1), "cfg.gamma"),
        (dict(gae_lambda=1.01), "cfg.gae_lambda"),
        (dict(gae_lambda=-1.0), "cfg.gae_lambda"),
        (dict(clip_eps=0.0), "cfg.clip_eps"),
        (dict(clip_eps=-0.2), "cfg.clip_eps"),
        (dict(batch_size=65, n_envs=8, n_steps=8), "larger than the rollout"),
        (dict(lr=0.0), "cfg.lr"),
        (dict(n_epochs=0), "cfg.n_epochs"),
    ],
)
def test_bad_config_is_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        train_ppo(make_cartpole_envs, PPOConfig(**change), seed=0)


def test_wrong_action_space_is_rejected():
    def multi_discrete(n):
        env = gym.make_vec("CartPole-v1", num_envs=n)
        space = gym.spaces.MultiDiscrete([2, 2])
        env.single_action_space = space
        return env

    with pytest.raises(TypeError, match="action space"):
        train_ppo(multi_discrete, PPOConfig(n_envs=2, batch_size=64), 0)


def test_loss_rejects_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_loss(x, x, x, x, x, x, clip_eps=0.0)
    with pytest.raises(ValueError, match="shape"):
        ppo_loss(x, x, torch.zeros(4), x, x, x)
    with pytest.raises(ValueError, match="old_values"):
        ppo_loss(x, x, x, x, x, x, clip_vf=0.2)


# --- short runs --------------------------------------------------------------


def test_short_cartpole_run_beats_random_and_is_seeded():
    cfg = PPOConfig(
        total_steps=5_000,
        n_envs=8,
        n_steps=32,
        batch_size=128,
        n_epochs=8,
        lr=3e-3,
        anneal_lr=False,
    )
    run = train_ppo(make_cartpole_envs, cfg, seed=3)
    ret = evaluate_policy(
        run.agent.greedy, gym.make("CartPole-v1"), 5, seed=100
    )
    # a random policy lasts about 22 steps on CartPole
    assert ret.mean() > 60, ret
    # seeded: the first updates of a second run repeat the first exactly
    again = train_ppo(make_cartpole_envs, replace(cfg, total_steps=700), 3)
    assert again.episodes == run.episodes[: len(again.episodes)]
    assert again.stats == run.stats[: len(again.stats)]


def test_pendulum_rollout_and_update_run():
    cfg = PPOConfig(
        total_steps=512,
        n_envs=2,
        n_steps=128,
        batch_size=64,
        n_epochs=2,
        gamma=0.9,
        reward_scale=0.1,
    )
    res = train_ppo(make_pendulum_envs, cfg, seed=0)
    assert isinstance(res.agent, GaussianActorCritic)
    assert res.stats[-1]["steps"] >= 512
    assert all(np.isfinite(s["loss"]) for s in res.stats)
    action = res.agent.greedy(np.zeros(3, np.float32))
    assert action.shape == (1,)
