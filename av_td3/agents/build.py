"""Build the agent a run config names, with its shapes from the env's spaces (DrQ-v2's way: the config
holds the hyperparameters, the env the shapes)."""

from __future__ import annotations

import torch
from gymnasium import spaces
from hydra.utils import instantiate
from omegaconf import DictConfig

from av_td3.agents.spec import AgentSpec
from av_td3.config import Config


def build_agent(raw_cfg: DictConfig, cfg: Config, observation_space: spaces.Dict, action_space: spaces.Box,
                device: torch.device):
    """``raw_cfg``: the composed config (its ``agent`` node has the ``_target_``); ``cfg``: the same,
    validated."""
    env_step = cfg.env.step_seconds() if hasattr(cfg.env, "step_seconds") else 0.05
    spec = AgentSpec.from_spaces(observation_space, action_space, device, cfg.clipping,
                                 diagnostics_every=cfg.trainer.log_every_updates,
                                 step_seconds=env_step * cfg.trainer.action_repeat,
                                 obstacle_range=getattr(cfg.env, "obstacle_range", 20.0))
    return instantiate(raw_cfg.agent, _partial_=True, _convert_="all")(spec=spec)
