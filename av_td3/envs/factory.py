"""Build the env a run config names. Driving envs get the scenario's NPC count; CARLA also the Hydra
job number (its ports are derived from it so parallel jobs on one machine never clash)."""

from __future__ import annotations

import gymnasium as gym
from hydra.utils import get_object

from av_td3.config import CarlaEnvConfig, Config, GymEnvConfig, HighwayEnvConfig


def make_env(cfg: Config, role: str, job_num: int = 0, render: bool = False) -> gym.Env:
    """``render``: the embedded simulator also renders RGB frames (``env.render()``, for eval videos);
    CARLA and Gymnasium envs ignore it (their videos show the policy's camera view only)."""
    factory = get_object(cfg.env._target_)
    if isinstance(cfg.env, GymEnvConfig):
        return factory(cfg.env, role=role)
    kwargs = {"job_num": job_num} if isinstance(cfg.env, CarlaEnvConfig) else {}
    if render and isinstance(cfg.env, HighwayEnvConfig):
        kwargs["render_mode"] = "rgb_array"
    return factory(cfg.env, npc_vehicles=cfg.scenario.npc_vehicles, role=role, **kwargs)
