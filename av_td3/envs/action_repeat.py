"""Action repeat: the agent acts every ``k`` env frames and holds its action in between (DrQ-v2's
``action_repeat``). ``step`` returns the frames' summed reward, the last frame's observation, and an
``info`` that is the last frame's plus every frame's reward and info (``FRAMES``), so that metrics,
reward components and step counts stay per env frame (``metrics.EpisodeMetrics`` reads them)."""

from __future__ import annotations

import gymnasium as gym

FRAMES = "frames"  # info key: the per-frame infos of one agent step
FRAME_REWARDS = "frame_rewards"  # info key: their rewards


class ActionRepeat(gym.Wrapper):
    def __init__(self, env: gym.Env, repeat: int):
        if repeat < 1:
            raise ValueError(f"action repeat must be >= 1, got {repeat}")
        super().__init__(env)
        self.repeat = repeat

    def step(self, action):
        infos, rewards = [], []
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            infos.append(info)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        return obs, sum(rewards), terminated, truncated, {**info, FRAMES: infos, FRAME_REWARDS: rewards}


def with_repeat(env: gym.Env, repeat: int) -> gym.Env:
    """``env`` with each action held for ``repeat`` frames; the env itself when repeat is 1."""
    return ActionRepeat(env, repeat) if repeat > 1 else env


def frames_of(info: dict) -> list[tuple[float, dict]] | None:
    """(reward, info) per env frame of an ActionRepeat step; None for a plain env step."""
    if FRAMES not in info:
        return None
    return list(zip(info[FRAME_REWARDS], info[FRAMES], strict=True))
