"""Action repeat: the agent acts every ``k`` env frames and holds its action in between (DrQ-v2's
``action_repeat``). ``step`` returns the frames' summed reward, the last frame's observation, and an
``info`` that is the last frame's plus every frame's reward and info (``FRAMES``), so that metrics,
reward components and step counts stay per env frame (``metrics.EpisodeMetrics`` reads them).

A camera observation's frame stack is rebuilt at the agent's rate: the newest frame of every
``frame_stride``-th agent step, the last ``stack`` of them (DrQ-v2 stacks outside its action repeat too).
The env's own stack holds consecutive env frames, which is what the agent sees with neither a repeat nor
a stride; with either, the replay, which stores one frame per agent step (replay.py), rebuilds stacks of
frames ``k * frame_stride`` env frames apart, and the policy must act on the stacks it trains on."""

from __future__ import annotations

import gymnasium as gym

from av_td3.envs.contract import IMAGE, FrameStack

FRAMES = "frames"  # info key: the per-frame infos of one agent step
FRAME_REWARDS = "frame_rewards"  # info key: their rewards


class ActionRepeat(gym.Wrapper):
    def __init__(self, env: gym.Env, repeat: int, frame_stride: int = 1):
        if repeat < 1 or frame_stride < 1:
            raise ValueError(f"action repeat and frame stride must be >= 1, got {repeat} and {frame_stride}")
        super().__init__(env)
        self.repeat = repeat
        image = getattr(env.observation_space, "spaces", {}).get(IMAGE)
        self._stack = FrameStack(*image.shape, stride=frame_stride) if image is not None else None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self._stack is not None:
            self._stack.reset()
        return self._restack(obs), info

    def step(self, action):
        infos, rewards = [], []
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            infos.append(info)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        return (self._restack(obs), sum(rewards), terminated, truncated,
                {**info, FRAMES: infos, FRAME_REWARDS: rewards})

    def _restack(self, obs):
        if self._stack is None:
            return obs
        return {**obs, IMAGE: self._stack.push(obs[IMAGE][-1])}


def with_repeat(env: gym.Env, repeat: int, frame_stride: int = 1) -> gym.Env:
    """``env`` with each action held for ``repeat`` frames and its frame stacks ``frame_stride`` agent steps
    apart; the env itself when both are 1."""
    return ActionRepeat(env, repeat, frame_stride) if repeat > 1 or frame_stride > 1 else env


def frames_of(info: dict) -> list[tuple[float, dict]] | None:
    """(reward, info) per env frame of an ActionRepeat step; None for a plain env step."""
    if FRAMES not in info:
        return None
    return list(zip(info[FRAME_REWARDS], info[FRAMES], strict=True))
