"""Build the env a run config names. Driving envs get the scenario's NPC count; CARLA also the Hydra
job number (its ports are derived from it so parallel jobs on one machine never clash). ``make_run_env``
is what the trainer calls: with the action repeat, and in a worker process when ``env.worker``."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
from hydra.utils import get_object

from av_td3.config import CarlaEnvConfig, Config, GymEnvConfig, HighwayEnvConfig
from av_td3.envs.action_repeat import with_repeat
from av_td3.envs.worker import SupervisedEnv, Turns


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


def build_run_env(cfg: Config, role: str, job_num: int = 0, render: bool = False) -> gym.Env:
    """The env a run steps, in this process: ``make_env`` with the trainer's action repeat and the env's
    frame stride."""
    return with_repeat(make_env(cfg, role, job_num, render), cfg.trainer.action_repeat,
                       cfg.env.frame_stride)


def make_run_env(cfg: Config, role: str, job_num: int = 0, render: bool = False,
                 turns: Turns | None = None) -> gym.Env:
    """``build_run_env``, in a supervised worker process when ``env.worker`` (envs/worker.py); the
    action repeat runs inside the worker, so an agent step is one message each way. The run's envs pass
    one ``turns``: envs on one simulator take turns driving it."""
    if not cfg.env.worker:
        return build_run_env(cfg, role, job_num, render)
    e = cfg.env
    return SupervisedEnv(partial(build_run_env, cfg, role, job_num, render), name=role,
                         step_timeout=e.step_timeout, start_timeout=e.start_timeout,
                         max_reconnects=e.max_reconnects, reconnect_delay=e.reconnect_delay, turns=turns)
