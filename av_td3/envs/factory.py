"""Build the env a run config names. Driving envs get the scenario's NPC count; CARLA also the Hydra
job number (its ports are derived from it so parallel jobs on one machine never clash). ``make_run_env``
is what the trainer calls: with the action repeat, and in a worker process when ``env.worker``."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import gymnasium as gym
from hydra.utils import get_object

from av_td3.config import CarlaEnvConfig, Config, DrivingEnvConfig, GymEnvConfig, HighwayEnvConfig
from av_td3.envs.action_repeat import with_repeat
from av_td3.envs.worker import SupervisedEnv, Turns


def role_env_config(env_cfg, role: str):
    """The env config an env of ``role`` runs: any role but ``train`` (evaluation) drops the footprint
    bound (``env.max_marking_overlap``) when ``env.marking_bound_in_eval`` is false."""
    if role == "train" or not isinstance(env_cfg, DrivingEnvConfig) or env_cfg.marking_bound_in_eval:
        return env_cfg
    return replace(env_cfg, max_marking_overlap=None)


def make_env(cfg: Config, role: str, job_num: int = 0, render: bool = False) -> gym.Env:
    """``render``: the embedded simulator also renders RGB frames (``env.render()``, for eval videos);
    CARLA and Gymnasium envs ignore it (their videos show the policy's camera view only)."""
    env_cfg = role_env_config(cfg.env, role)
    factory = get_object(env_cfg._target_)
    if isinstance(env_cfg, GymEnvConfig):
        return factory(env_cfg, role=role)
    kwargs = {"job_num": job_num} if isinstance(env_cfg, CarlaEnvConfig) else {}
    if render and isinstance(env_cfg, HighwayEnvConfig):
        kwargs["render_mode"] = "rgb_array"
    return factory(env_cfg, npc_vehicles=cfg.scenario.npc_vehicles, role=role, **kwargs)


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
