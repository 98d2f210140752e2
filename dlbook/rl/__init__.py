"""Deep reinforcement learning.

* :mod:`dlbook.rl.dqn`: MDPs, value iteration and tabular Q-learning, DQN and
  Double DQN; the pieces the later RL chapters share (``ReplayBuffer``,
  ``seed_env``, ``evaluate_policy``, ``check_discrete``,
  ``import_stable_baselines3``).
* :mod:`dlbook.rl.policy_gradient`: REINFORCE with and without a learned
  baseline, the variance of the gradient estimate, advantage actor-critic and
  GAE; the rollout pieces PPO reuses (``RolloutCollector``, ``Rollout``,
  ``gae``, ``ActorCritic``).
* :mod:`dlbook.rl.ppo`: PPO's clipped objective, advantage normalization,
  minibatch epochs, a Gaussian policy for continuous actions, and SB3's PPO
  with the same settings.
* :mod:`dlbook.rl.ddpg`: DDPG's deterministic policy gradient, Polyak target
  updates, tanh-bounded actions and Gaussian exploration; TD3's clipped double
  Q, delayed actor updates and target smoothing as three config fields; SB3's
  DDPG and TD3 with the same settings.
* :mod:`dlbook.rl.nas`: architecture search in miniature (Zoph & Le 2017): a
  factorized and an LSTM REINFORCE controller proposing small CNNs, scored by
  a cached short training on Fashion-MNIST, against random search.

Chapters: ``book/rl/`` (DQN, policy gradients, PPO, DDPG, architecture
search).
Tests: ``tests/rl/``.
"""
