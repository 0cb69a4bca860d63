"""Exploration: the actions the trainer takes, around the policy's or instead of it (the warm-up).

``Explorer`` adds a noise process to the deterministic policy action, ``clip(pi(s) + std(t) * n_t)``,
with ``n_t`` one of (``exploration.process``):

- ``gaussian``: white N(0, 1) per step (TD3's and the reference's choice);
- ``ou``: Ornstein-Uhlenbeck, ``n_{t+1} = n_t - theta n_t + sqrt(2 theta) e_t``: an AR(1) process with
  unit stationary variance, correlated over ~1/theta steps (DDPG's original choice);
- ``pink``: colored noise with a 1/f^beta spectrum (Eberhard et al., "Pink Noise Is All You Need",
  ICLR 2023), from the authors' package ``pink-noise-rl``; a fresh unit-variance sequence per episode.

``exploration.action_scale`` scales each action dimension's noise. ``std(t)`` decays linearly from ``std`` to ``final_std`` over ``decay_steps`` env frames (DrQ-v2's
schedule), or stays at ``std``. The warm-up (``trainer.learning_starts``) draws uniform actions (the
reference) or, with ``warmup=process``, ``clip(warmup_std * n_t)`` from the same process, so that
warm-up actions are as correlated in time as the later ones.

Every draw comes from one seeded numpy Generator (``rng``), whose state the checkpoint keeps; each process
restarts at an episode's start (``reset``), so a run resumed at an episode boundary is exact.
"""

from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces
from pink import ColoredNoiseProcess

from av_td3.config.exploration import ExplorationConfig


class WhiteNoise:
    def __init__(self, action_dim: int, rng: np.random.Generator):
        self.action_dim, self.rng = action_dim, rng

    def reset(self) -> None:
        pass

    def sample(self) -> np.ndarray:
        return self.rng.standard_normal(self.action_dim)


class OUNoise:
    """Unit-variance Ornstein-Uhlenbeck noise, started at 0 each episode."""

    def __init__(self, action_dim: int, rng: np.random.Generator, theta: float):
        self.action_dim, self.rng, self.theta = action_dim, rng, theta
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros(self.action_dim)

    def sample(self) -> np.ndarray:
        self.state = (1.0 - self.theta) * self.state + math.sqrt(
            self.theta * (2.0 - self.theta)) * self.rng.standard_normal(self.action_dim)
        return self.state


class PinkNoise:
    """Colored noise, one independent sequence per action dimension, ``horizon`` steps long (an
    episode's length in agent steps); a new sequence starts at every episode."""

    def __init__(self, action_dim: int, rng: np.random.Generator, beta: float, horizon: int):
        self.process = ColoredNoiseProcess(beta=beta, size=(action_dim, horizon), rng=rng)

    def reset(self) -> None:
        self.process.reset()

    def sample(self) -> np.ndarray:
        return np.asarray(self.process.sample(), dtype=np.float64)


def make_process(cfg: ExplorationConfig, action_dim: int, rng: np.random.Generator, horizon: int):
    if cfg.process == "gaussian":
        return WhiteNoise(action_dim, rng)
    if cfg.process == "ou":
        return OUNoise(action_dim, rng, cfg.ou_theta)
    return PinkNoise(action_dim, rng, cfg.pink_beta, horizon)


class Explorer:
    def __init__(self, cfg: ExplorationConfig, action_space: spaces.Box, seed: int, horizon: int):
        self.cfg = cfg
        self.low, self.high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE8]))
        n = int(np.prod(action_space.shape))
        if cfg.action_scale is not None and len(cfg.action_scale) != n:
            raise ValueError(f"exploration.action_scale has {len(cfg.action_scale)} entries; the action "
                             f"space has {n} dimensions")
        self.scale = np.ones(n) if cfg.action_scale is None else np.asarray(cfg.action_scale, dtype=np.float64)
        self.noise = make_process(cfg, n, self.rng, max(horizon, 2))

    def reset(self) -> None:
        """At every episode's start."""
        self.noise.reset()

    def std(self, step: int) -> float:
        cfg = self.cfg
        if cfg.final_std is None or cfg.decay_steps == 0:
            return cfg.std
        frac = min(step / cfg.decay_steps, 1.0)
        return cfg.std + frac * (cfg.final_std - cfg.std)

    def action(self, policy_action: np.ndarray, step: int) -> np.ndarray:
        """The exploring action at env frame ``step``."""
        noisy = policy_action + self.std(step) * self.scale * self.noise.sample()
        return np.clip(noisy, self.low, self.high).astype(np.float32)

    def warmup_action(self) -> np.ndarray:
        """An action of the warm-up phase (before any update)."""
        if self.cfg.warmup == "uniform":
            return self.rng.uniform(self.low, self.high).astype(np.float32)
        noise = self.cfg.warmup_std * self.scale * self.noise.sample()
        return np.clip(noise, self.low, self.high).astype(np.float32)
