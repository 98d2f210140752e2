"""Deep reinforcement learning.

* :mod:`dlbook.rl.dqn`: MDPs, value iteration and tabular Q-learning, DQN and
  Double DQN; the pieces the later RL chapters share (``ReplayBuffer``,
  ``seed_env``, ``evaluate_policy``, ``check_discrete``,
  ``import_stable_baselines3``).
* :mod:`dlbook.rl.policy_gradient`: REINFORCE with and without a learned
  baseline, the variance of the gradient estimate, advantage actor-critic and
  GAE; the rollout pieces PPO reuses (``RolloutCollector``, ``Rollout``,
  ``gae``, ``ActorCritic``).

Chapters: ``book/rl/`` (DQN and policy gradients so far; PPO, DDPG and the
architecture-search controller are issue 20's open work).
Tests: ``tests/rl/``.
"""
