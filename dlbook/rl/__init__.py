"""Deep reinforcement learning.

* :mod:`dlbook.rl.dqn`: MDPs, value iteration and tabular Q-learning, DQN and
  Double DQN; the pieces the later RL chapters share (``ReplayBuffer``,
  ``seed_env``, ``evaluate_policy``, ``check_discrete``,
  ``import_stable_baselines3``).

Chapters: ``book/rl/`` (DQN so far; policy gradients, PPO, DDPG and the
architecture-search controller are issue 20's open work).
Tests: ``tests/rl/``.
"""
