"""The envs a run steps: ``trainer.num_envs`` train envs (each with its own exploration process and
episode seeds) and one eval env, built in worker processes when ``env.worker``, stepped together, closed
together. An episode the simulator loses is reported to ``on_lost`` and its reset retried; the env bounds
the retries (it raises EnvFailed after env.max_reconnects in a row)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from av_td3.config import Config
from av_td3.envs.errors import EpisodeLost
from av_td3.envs.factory import make_run_env
from av_td3.envs.worker import Turns
from av_td3.exploration import Explorer

log = logging.getLogger("av_td3")


class EnvPool:
    def __init__(self, cfg: Config, job_num: int = 0):
        self.cfg = cfg
        n = cfg.trainer.num_envs
        turns = Turns() if n == 1 else None  # the train and eval env share one simulator: one drives at a time
        self._sent: list[int] = []  # envs stepping in their workers (send), until receive reads them
        self.envs: list = []
        try:
            for _ in range(n):
                self.envs.append(make_run_env(cfg, "train", job_num, turns=turns))
            self.eval_env = make_run_env(cfg, "eval", job_num, render=cfg.trainer.eval_video, turns=turns)
        except BaseException:
            for env in self.envs:
                env.close()  # a started worker (or CARLA connection) is not left behind
            raise
        horizon = math.ceil(cfg.env.max_episode_steps / cfg.trainer.action_repeat)  # agent steps
        self.explorers = []
        for k, env in enumerate(self.envs):  # env 0 keeps the single-env seeds: num_envs=1 is unchanged
            seed = cfg.seed if k == 0 else int(np.random.SeedSequence([cfg.seed, 0x5EED, k]).generate_state(1)[0])
            env.action_space.seed(seed)
            self.explorers.append(Explorer(cfg.exploration, env.action_space, seed, horizon))

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, k: int, seed: int, on_lost: Callable[[EpisodeLost], None]) -> dict:
        """Train env ``k``'s first observation of an episode from ``seed`` (its explorer restarted)."""
        while True:
            try:
                obs, _ = self.envs[k].reset(seed=seed)
                break
            except EpisodeLost as e:
                on_lost(e)
        self.explorers[k].reset()
        return obs

    def step(self, actions: dict[int, np.ndarray]) -> dict:
        """Every env's step result, or the EpisodeLost it raised. Envs in worker processes step in
        parallel (all actions sent, then all results read)."""
        if len(actions) > 1 and self.in_workers:
            self.send(actions)
            return self.receive()
        return {k: self._result(lambda k=k, a=a: self.envs[k].step(a)) for k, a in actions.items()}

    @property
    def in_workers(self) -> bool:
        """The train envs run in worker processes (env.worker): ``send`` returns before they have stepped."""
        return all(hasattr(env, "step_async") for env in self.envs)

    def send(self, actions: dict[int, np.ndarray]) -> None:
        """Start a step of each env in ``actions`` (worker processes only); ``receive`` reads the results."""
        for k, a in actions.items():
            self.envs[k].step_async(a)
        self._sent = list(actions)

    def receive(self) -> dict:
        """The results of the envs ``send`` started, as ``step`` returns them."""
        sent, self._sent = self._sent, []
        return {k: self._result(self.envs[k].step_wait) for k in sent}

    @staticmethod
    def _result(step: Callable[[], tuple]):
        try:
            return step()
        except EpisodeLost as e:
            return e

    def generators(self) -> dict[str, np.random.Generator]:
        """The random streams a checkpoint keeps: each env's action space and exploration process."""
        out = {"action_space": self.envs[0].action_space.np_random, "exploration": self.explorers[0].rng}
        for k in range(1, len(self.envs)):
            out |= {f"action_space_{k}": self.envs[k].action_space.np_random,
                    f"exploration_{k}": self.explorers[k].rng}
        return out

    def close(self) -> None:
        for env in (*self.envs, self.eval_env):  # each in its own try: one failing close skips none
            try:
                env.close()
            except Exception as e:  # noqa: BLE001 - closing is best effort; the run's outcome stands
                log.warning("closing an env failed: %s: %s", type(e).__name__, e)
