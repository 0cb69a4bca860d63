"""Any Gymnasium env with a Box action space, in the shapes the agents and the replay buffer take.

- actions: rescaled from the agent's [-1, 1] to the env's bounds (``RescaleAction``);
- vector observations (any float Box): ``{"vector": float32 (n,)}``, flattened. The agent then has no
  CNN (``AgentSpec.image_shape`` is None);
- pixel observations (a uint8 Box (H, W), (H, W, 1) or (H, W, 3|4)): ``{"image": uint8 (frames, H, W),
  "vector": float32 (0,)}``, grayscale frames stacked oldest first with zeros after reset, exactly as the
  driving envs' camera (``contract.FrameStack``), which is what the replay buffer rebuilds stacks from;
- episodes truncated after ``env.max_episode_steps`` (replacing the env's registered limit).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import RescaleAction

from av_td3.config import GymEnvConfig
from av_td3.envs.contract import IMAGE, VECTOR, FrameStack

_EMPTY = np.zeros(0, dtype=np.float32)


def make_gym_env(cfg: GymEnvConfig, role: str = "train") -> gym.Env:
    """``role`` ("train" / "eval") is accepted for the factory's uniform call; both are the same env."""
    env = gym.make(cfg.id, max_episode_steps=cfg.max_episode_steps)
    act = env.action_space
    if not isinstance(act, spaces.Box):
        env.close()
        raise ValueError(f"env.id={cfg.id}: TD3 needs a continuous (Box) action space, got {act}")
    if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
        env.close()
        raise ValueError(f"env.id={cfg.id}: the action space {act} has infinite bounds, so actions "
                         "cannot be rescaled from [-1, 1]")
    one = np.ones(act.shape, dtype=np.float32)  # float32 bounds: no precision warning from Box
    return DictObservation(RescaleAction(env, -one, one), cfg.frame_stack)


def is_pixel_space(space: gym.Space) -> bool:
    return (isinstance(space, spaces.Box) and space.dtype == np.uint8
            and (len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[-1] in (1, 3, 4))))


class DictObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Box observations -> the agents' dict observations (see the module docstring)."""

    def __init__(self, env: gym.Env, frame_stack: int):
        gym.utils.RecordConstructorArgs.__init__(self, frame_stack=frame_stack)  # env.spec can rebuild it
        super().__init__(env)
        obs = env.observation_space
        self.action_space = spaces.Box(-1.0, 1.0, shape=env.action_space.shape, dtype=np.float32)
        self.pixels = is_pixel_space(obs)
        if self.pixels:
            h, w = obs.shape[:2]
            self.frames = FrameStack(frame_stack, h, w)
            self.observation_space = spaces.Dict({
                IMAGE: spaces.Box(0, 255, shape=(frame_stack, h, w), dtype=np.uint8),
                VECTOR: spaces.Box(-np.inf, np.inf, shape=(0,), dtype=np.float32)})
        elif isinstance(obs, spaces.Box):
            self.observation_space = spaces.Dict({VECTOR: spaces.Box(
                obs.low.astype(np.float32).ravel(), obs.high.astype(np.float32).ravel(),
                dtype=np.float32)})
        else:
            raise ValueError(f"env={env.spec.id if env.spec else env}: only Box observations (vectors "
                             f"or uint8 images) are supported, got {obs}")

    def _convert(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        if not self.pixels:
            return {VECTOR: np.asarray(obs, dtype=np.float32).ravel()}
        frame = np.asarray(obs)
        if frame.ndim == 3:
            frame = frame[..., 0] if frame.shape[-1] == 1 else (
                frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114).round().astype(np.uint8)
        return {IMAGE: self.frames.push(frame), VECTOR: _EMPTY}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self.pixels:
            self.frames.reset()
        return self._convert(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(
            np.asarray(action, dtype=self.env.action_space.dtype))
        return self._convert(obs), float(reward), terminated, truncated, info
