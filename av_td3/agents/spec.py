"""What the trainer tells an agent at build time: shapes from the env's spaces, the device and the
clipping config. Everything else an agent reads comes from its ``agent`` config group."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gymnasium import spaces

from av_td3.config.clipping import ClippingConfig
from av_td3.envs.contract import IMAGE, VECTOR


@dataclass(frozen=True)
class AgentSpec:
    image_shape: tuple[int, ...] | None  # (frames, H, W), None without a camera
    vector_size: int
    action_dim: int
    device: torch.device
    clipping: ClippingConfig
    # Updates between diagnostics the agent measures at a cost (update sizes): the trainer's logging
    # interval (trainer.log_every_updates), so each logged interval carries one fresh measurement.
    diagnostics_every: int = 1
    # Simulated seconds between the agent's actions (the env's step x trainer.action_repeat).
    step_seconds: float = 0.05
    # m: the range the vector's obstacle features are normalised by (env.obstacle_range; driving envs).
    obstacle_range: float = 20.0

    @classmethod
    def from_spaces(cls, obs: spaces.Dict, action: spaces.Box, device: torch.device,
                    clipping: ClippingConfig, diagnostics_every: int = 1, step_seconds: float = 0.05,
                    obstacle_range: float = 20.0) -> "AgentSpec":
        image = obs.spaces.get(IMAGE)
        return cls(image_shape=None if image is None else tuple(image.shape),
                   vector_size=int(obs.spaces[VECTOR].shape[0]), action_dim=int(action.shape[0]),
                   device=device, clipping=clipping, diagnostics_every=diagnostics_every,
                   step_seconds=step_seconds, obstacle_range=obstacle_range)
