"""The one shared loop: act, store, update, evaluate, checkpoint, log.

Warm-up actions until ``learning_starts``, then the agent's policy plus the exploration process
(``exploration.py``); ``updates_per_step`` updates per agent step; each agent action held for
``action_repeat`` env frames, and every step count (budgets, intervals, logged steps) in env frames;
deterministic evaluation on a separate env instance every ``eval_every`` frames (no buffer writes);
a checkpoint of the whole run state every ``checkpoint_every``
steps, taken at the next episode boundary so a resumed run replays exactly what an uninterrupted one
would have done. Every episode is reset with a seed derived from (run seed, episode index), which is what
makes that replay exact. A stop signal (SIGTERM, SIGINT, Slurm's SIGUSR2) is exact too: training goes on
to the end of the episode in progress and checkpoints there, if that comes within
``trainer.stop_grace_s``; past it (or at a second signal) the run stops without a new checkpoint and
resumes, as after SIGKILL, from the last one (exact, redoing the frames since).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from av_td3 import checkpoint, tags, video
from av_td3.analysis.runs import DONE, RESULTS  # the run directory's file names, in one place
from av_td3.agents.build import build_agent
from av_td3.agents.spec import AgentSpec
from av_td3.config import Config
from av_td3.envs.action_repeat import frames_of
from av_td3.envs.errors import EnvFailed, EpisodeLost
from av_td3.envs.factory import make_run_env
from av_td3.envs.route_file import eval_routes
from av_td3.envs.worker import Turns
from av_td3.evaluation import evaluate_by_route
from av_td3.exploration import Explorer
from av_td3.jsonsafe import finite_or_none
from av_td3.logger import RunLogger, UpdateLog
from av_td3.replay import ReplayBuffer

log = logging.getLogger("av_td3")

EVAL_SEED_OFFSET = 1_000_003  # eval episodes use their own seed stream, the same at every evaluation


class NonFiniteError(RuntimeError):
    """Too many consecutive updates had a non-finite loss or gradient."""


class Trainer:
    def __init__(self, raw_cfg: DictConfig, cfg: Config, run_dir: Path, job_num: int = 0,
                 hparams: dict | None = None):
        self.cfg, self.run_dir = cfg, run_dir
        self.hparams = hparams or {}  # group choices and key settings, for TensorBoard's HParams
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        n = cfg.trainer.num_envs
        turns = Turns() if n == 1 else None  # the train and eval env share one simulator: one drives at a time
        self.envs: list = []  # the train envs (trainer.num_envs), stepped together
        try:
            for _ in range(n):
                self.envs.append(make_run_env(cfg, "train", job_num, turns=turns))
            self.eval_env = make_run_env(cfg, "eval", job_num, render=cfg.trainer.eval_video, turns=turns)
        except BaseException:
            for env in self.envs:
                env.close()  # a started worker (or CARLA connection) is not left behind
            raise
        self.env = self.envs[0]
        horizon = math.ceil(cfg.env.max_episode_steps / cfg.trainer.action_repeat)  # agent steps
        self.explorers = []
        for k, env in enumerate(self.envs):  # env 0 keeps the single-env seeds: num_envs=1 is unchanged
            seed = cfg.seed if k == 0 else int(np.random.SeedSequence([cfg.seed, 0x5EED, k]).generate_state(1)[0])
            env.action_space.seed(seed)
            self.explorers.append(Explorer(cfg.exploration, env.action_space, seed, horizon))
        self.explorer = self.explorers[0]
        self.agent = build_agent(raw_cfg, cfg, self.env.observation_space, self.env.action_space, self.device)
        self.learns = hasattr(self.agent, "update")
        spec = AgentSpec.from_spaces(self.env.observation_space, self.env.action_space, self.device, cfg.clipping)
        self.replay = (ReplayBuffer(cfg.trainer.replay_capacity, spec.image_shape, spec.vector_size,
                                    spec.action_dim, self.device, seed=cfg.seed, streams=n)
                       if self.learns else None)
        self.eval_routes = eval_routes(cfg.env)  # None: the eval env's own road
        self.step = 0
        self.episode = 0  # training episodes finished
        self._started = 0  # training episodes started (seeds: the n-th episode started gets seed n)
        self.evals: list[dict] = []  # one row per evaluation phase
        self.final_by_route: dict[str, dict] = {}  # the final evaluation per route (with several routes)
        self.wall_time = 0.0  # seconds spent in earlier sessions of this run (resume)
        self._session_start = time.monotonic()
        self.stop_signal: int | None = None
        self._signals, self._signal_at = 0, 0.0  # how many stop signals, and when the first came
        self._checkpoint_step = 0  # the step the last checkpoint holds (what a resume continues from)
        self.reconnects = 0  # env episodes lost to simulator failures (CARLA) and rebuilt

    # --- the loop -------------------------------------------------------------------------------------
    def run(self) -> float:
        """Train to ``trainer.total_steps`` (resuming if the run dir holds a checkpoint); return the
        final evaluation's mean return."""
        t = self.cfg.trainer
        resumed = self._maybe_resume()
        # Everything up to and including the checkpoint's step is kept; later events are replaced.
        self.logger = RunLogger(self.run_dir, purge_step=self.step + 1 if resumed else None)
        updates = UpdateLog()
        self._install_signal_handlers()
        start, start_step = time.monotonic(), self.step
        self._session_start = start
        log.info("start: step %d of %d on %s, %d torch threads; run dir %s", self.step, t.total_steps,
                 self.device, torch.get_num_threads(), self.run_dir)
        if self.cfg.env.worker:
            log.info("env workers (env.worker=true): train pid %s, eval pid %s", self.env.pid, self.eval_env.pid)
        checkpoint_due = False
        logged_at = getattr(self.agent, "num_updates", 0)  # the update count at the last log
        bar = self._progress_bar()
        # Log lines go through tqdm.write while a bar is shown, so they never land on the bar's line.
        redirect = logging_redirect_tqdm(loggers=[logging.getLogger(), log]) if t.progress_bar else nullcontext()
        try:
            redirect.__enter__()  # left in the finally below, after the bar is closed
            n = len(self.envs)
            # Per env: its observation and episode; an env whose episode ended while a checkpoint (or a
            # stop) is due waits (None) until every env's has, so the checkpoint is at a boundary of all.
            episodes: list = [self._new_episode(k) for k in range(n)]
            while self.step < t.total_steps and self.learns:
                active = [k for k in range(n) if episodes[k] is not None]
                actions = {}
                for k in active:
                    obs, ep = episodes[k]
                    explorer = self.explorers[k]
                    actions[k] = (explorer.warmup_action() if self.step < t.learning_starts
                                  else explorer.action(self.agent.act(obs), self.step))
                results = self._step_envs(actions)
                previous, stepped, ended = self.step, 0, []
                for k in active:
                    obs, ep = episodes[k]
                    if isinstance(results[k], EpisodeLost):  # the simulator failed and was rebuilt
                        self._episode_lost(results[k], "train")
                        self.replay.open[k] = False  # the transition in flight is dropped
                        episodes[k] = self._new_episode(k, again=ep)
                        continue
                    next_obs, reward, terminated, truncated, info = results[k]
                    self.replay.add(obs, actions[k], self._learning_reward(reward), next_obs, terminated,
                                    truncated, stream=k)
                    ep.add(reward, info)
                    self.step += ep.last_frames
                    stepped += 1
                    if terminated or truncated:  # logged at the frame count it ended at: distinct steps
                        ended.append((k, self.step))
                    else:
                        episodes[k] = (next_obs, ep)
                if not stepped:
                    continue
                bar.update(self.step - previous)

                if previous < t.learning_starts <= self.step:  # warm-up over: a bar whose ETA is training's
                    bar.close()
                    bar = self._progress_bar()
                if self.step >= t.learning_starts:
                    # updates_per_step per env step: the update-to-data ratio does not depend on num_envs.
                    for _ in range(t.updates_per_step * stepped):
                        batch = self.replay.sample(self.agent.batch_size, self.agent.n_step, self.agent.gamma)
                        updates.record(self.agent.update(*batch), self.step)
                    if self.agent.num_updates - logged_at >= t.log_every_updates:
                        self._log_updates(updates)
                        logged_at = self.agent.num_updates

                # Evaluate before a checkpoint can be taken at this step, so the checkpoint holds it.
                if crossed(previous, self.step, t.eval_every) and self.step < t.total_steps:
                    self._evaluate()
                    bar.set_postfix_str(self._postfix(), refresh=False)
                if crossed(previous, self.step, t.checkpoint_every):
                    checkpoint_due = True
                for k, end in ended:
                    self._log_episode(episodes[k][1], end)
                    self.episode += 1
                    waiting = checkpoint_due or self.stop_signal is not None
                    episodes[k] = None if waiting else self._new_episode(k)
                if ended and all(e is None for e in episodes):  # every env at an episode boundary
                    self._checkpoint()
                    checkpoint_due = False
                    if self.stop_signal is not None:  # at an episode boundary: the resume is exact
                        return self._stop(f"signal {signal.Signals(self.stop_signal).name}")
                    episodes = [self._new_episode(k) for k in range(n)]
                if ended:
                    bar.set_postfix_str(self._postfix(), refresh=False)
                if self.stop_signal is not None and (
                        self._signals > 1 or time.monotonic() - self._signal_at > t.stop_grace_s):
                    return self._stop(f"signal {signal.Signals(self.stop_signal).name}", checkpoint=False)
            bar.close()
            if self.learns and self.agent.num_updates > logged_at:
                self._log_updates(updates)
            final = self._evaluate(final=True)
            self._checkpoint()
            self._write_results("finished", final)
            (self.run_dir / DONE).touch()  # last: a run with DONE is complete
            sps = (self.step - start_step) / max(time.monotonic() - start, 1e-9)
            if self.reconnects:
                log.info("%d episodes were lost to simulator failures and replaced (results.json "
                         "reconnects)", self.reconnects)
            log.info("done: %d steps (%.1f steps/s this session), final eval return %.3f",
                     self.step, sps, final["mean_reward"])
            return float(final["mean_reward"])
        except EnvFailed as e:  # the simulator kept failing: keep what was learned, say why, stop
            if self.replay is not None:
                self.replay.open = [False] * len(self.envs)  # episodes in flight are gone; a resume starts anew
            self._checkpoint()
            self._write_results("failed", None, error=str(e))
            raise EnvFailed(f"{e}; stopped at step {self.step} with a checkpoint in "
                            f"{self.run_dir / checkpoint.CHECKPOINT}: relaunch the same command to resume "
                            f"once the simulator works") from e
        finally:
            bar.close()
            redirect.__exit__(None, None, None)
            for env in (*self.envs, self.eval_env):  # each in its own try: one failing close skips none
                try:
                    env.close()
                except Exception as e:  # noqa: BLE001 - closing is best effort; the run's outcome stands
                    log.warning("closing an env failed: %s: %s", type(e).__name__, e)
            if hasattr(self, "logger"):
                self.logger.close()

    def _new_episode(self, k: int = 0, again: "EpisodeTally | None" = None) -> tuple[dict, "EpisodeTally"]:
        """Reset train env ``k`` for the next episode (its seed: the number of episodes started), or with
        ``again`` for the same episode anew (after the simulator lost it: the same seed)."""
        index = again.index if again is not None else self._started
        if again is None:
            self._started += 1
        while True:  # a reset the simulator loses is retried (the env raises EnvFailed if it keeps failing)
            try:
                obs, _ = self.envs[k].reset(seed=self._episode_seed(index))
                break
            except EpisodeLost as e:
                self._episode_lost(e, "train")
        self.explorers[k].reset()
        return obs, EpisodeTally(index)

    def _step_envs(self, actions: dict[int, np.ndarray]) -> dict:
        """Every env's step result, or the EpisodeLost it raised. Envs in worker processes step in
        parallel (all actions sent, then all results read)."""
        parallel = len(actions) > 1 and all(hasattr(self.envs[k], "step_async") for k in actions)
        if parallel:
            for k, a in actions.items():
                self.envs[k].step_async(a)
        out: dict = {}
        for k, a in actions.items():
            try:
                out[k] = self.envs[k].step_wait() if parallel else self.envs[k].step(a)
            except EpisodeLost as e:
                out[k] = e
        return out

    def _episode_lost(self, error: EpisodeLost, role: str) -> None:
        self.reconnects += 1
        log.warning("%s episode lost at step %d (%s); reconnect %d, the %s", role, self.step, error,
                    self.reconnects, "episode is run again" if role == "eval" else "transition is dropped")
        if hasattr(self, "logger"):
            self.logger.scalars({tags.RECONNECTS: float(self.reconnects)}, self.step)

    def _learning_reward(self, reward: float) -> float:
        return learning_reward(reward, self.cfg.trainer.reward_scale, self.cfg.trainer.reward_clip)

    def _progress_bar(self) -> tqdm:
        """The warm-up and the training each get a bar, so the ETA is that of the phase being run
        (warm-up frames are many times faster than training ones)."""
        t = self.cfg.trainer
        warmup = self.step < t.learning_starts
        return tqdm(total=t.learning_starts if warmup else t.total_steps, initial=self.step,
                    desc="warm-up" if warmup else "train", disable=not t.progress_bar, unit="frame",
                    dynamic_ncols=True, mininterval=1.0, postfix=self._postfix())

    def _postfix(self) -> str:
        """The progress bar's: episodes, and the latest evaluation's success and return."""
        text = f"ep={self.episode}"
        if self.evals:
            last = self.evals[-1]
            if "success_rate" in last:
                text += f" eval_success={last['success_rate']:.0%}"
            text += f" eval_return={last['mean_reward']:.0f}"
        return text

    # --- logging ----------------------------------------------------------------------------------------
    def _log_updates(self, updates: UpdateLog) -> None:
        guarded = self.agent.guarded_steps()
        critic, actor, health = updates.fetch({n: g.health() for n, g in guarded.items()})
        self.logger.scalars(critic | self._limits("critic"), updates.critic_step)
        if actor:
            self.logger.scalars(actor | self._limits("actor"), updates.actor_step)
        alerts: dict[str, float] = {}  # written only when they fire; the value is the offending norm
        for net, h in health.items():
            for level in ("warning", "critical"):
                if h.get(f"alert_{level}_peak", 0.0) > 0.0:
                    alerts[tags.alert(net, "cnn", level)] = h[f"alert_{level}_peak"]
            if h["nonfinite_max_run"] > 0:  # value: the longest run of skipped updates
                alerts[tags.NONFINITE_ALERT] = max(alerts.get(tags.NONFINITE_ALERT, 0.0),
                                                   h["nonfinite_max_run"])
                alerts[tags.nonfinite_skips(net)] = h["nonfinite_total"]
            guarded[net].reset_interval()
        self.logger.scalars(alerts, self.step)
        limit = self.cfg.trainer.max_consecutive_nonfinite
        for net, h in health.items():
            if h["nonfinite_max_run"] >= limit:
                self._checkpoint()
                self._write_results("failed", None, error=f"{net}: non-finite loss or gradient")
                raise NonFiniteError(
                    f"{int(h['nonfinite_max_run'])} consecutive {net} updates had a non-finite loss or "
                    f"gradient (limit trainer.max_consecutive_nonfinite={limit}); stopped at step "
                    f"{self.step}, checkpoint in {self.run_dir / checkpoint.CHECKPOINT}")

    def _limits(self, net: str) -> dict[str, float]:
        limit = getattr(self.cfg.clipping, net).limit()
        return {} if limit is None else {tags.clip_limit(net): float(limit)}

    def _log_episode(self, ep: "EpisodeTally", step: int) -> None:
        values = {tags.EPISODE_REWARD: ep.total, tags.EPISODE_LENGTH: float(ep.length),
                  tags.EXPLORATION_NOISE: self.explorer.std(step)}
        values |= {tags.reward_component(k): v for k, v in ep.components.items()}
        self.logger.scalars(values, step)
        self.logger.row("train", {"step": step, "episode": self.episode, "return": ep.total,
                                  "length": ep.length, "success": int(ep.success)},
                        console=not self.cfg.trainer.progress_bar)

    def _evaluate(self, final: bool = False) -> dict:
        t = self.cfg.trainer
        n = t.final_eval_episodes if final and t.final_eval_episodes else t.eval_episodes
        recorder = video.EpisodeFrames() if t.eval_video else None
        summary, by_route = evaluate_by_route(self.agent, self.eval_env, eval_seeds(self.cfg.seed, n), recorder,
                                              on_lost=lambda e: self._episode_lost(e, "eval"),
                                              routes=self.eval_routes)
        if recorder is not None:
            fps = self.eval_env.metadata.get("render_fps", 20) / t.action_repeat  # one frame per agent step
            video.write(recorder, self.run_dir, self.step, fps, self.logger.tb)
        # A metric undefined this phase (no obstacle ahead: no TTC; no success: no completion time) is
        # left out of TensorBoard rather than written as NaN, which would look like a diverged run.
        self.logger.scalars({f"eval/{k}": v for k, v in summary.items() if math.isfinite(v)}, self.step)
        self.logger.row("eval", {"step": self.step, **summary}, console=False)  # every metric: eval.csv
        line = f"eval | step={self.step} return={summary['mean_reward']:.1f}"
        if "success_rate" in summary:
            line += (f" success={summary['success_rate']:.0%} collisions/km={summary['collisions_per_km']:.3g} "
                     f"speed={summary['avg_speed_kmh']:.1f} km/h met_traffic={summary['encounter_rate']:.0%}")
        log.info("%s (%d episodes)", line, n)
        self.logger.flush()
        self.evals.append({"step": self.step, **summary})
        if final:
            self.final_by_route = by_route
        return summary

    # --- state ------------------------------------------------------------------------------------------
    def _episode_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.cfg.seed, index]).generate_state(1)[0])

    def _state(self) -> dict:
        state = {"step": self.step, "episode": self.episode, "evals": self.evals,
                 "wall_time": self.elapsed(), "reconnects": self.reconnects,
                 "rng": checkpoint.rng_state(self._generators())}
        if self.learns:
            state["agent"] = self.agent.state_dict()
            state["replay"] = self.replay.state_dict()
        return state

    def elapsed(self) -> float:
        """Wall seconds of this run over every session so far (earlier ones from the checkpoint)."""
        return self.wall_time + time.monotonic() - self._session_start

    def _generators(self) -> dict[str, np.random.Generator]:
        out = {"action_space": self.env.action_space.np_random, "exploration": self.explorer.rng}
        for k in range(1, len(self.envs)):
            out |= {f"action_space_{k}": self.envs[k].action_space.np_random,
                    f"exploration_{k}": self.explorers[k].rng}
        return out

    def _checkpoint(self) -> None:
        checkpoint.save(self._state(), self.run_dir / checkpoint.CHECKPOINT)
        self._checkpoint_step = self.step
        log.debug("checkpoint at step %d", self.step)

    def _maybe_resume(self) -> bool:
        path = self.run_dir / checkpoint.CHECKPOINT
        if not path.exists():
            return False
        state = checkpoint.load(path)
        self.step, self.episode = int(state["step"]), int(state["episode"])
        self._started = self.episode  # checkpoints are taken with every env at an episode boundary
        self._checkpoint_step = self.step
        self.evals, self.wall_time = list(state["evals"]), float(state["wall_time"])
        self.reconnects = int(state["reconnects"])
        if self.learns:
            self.agent.load_state_dict(state["agent"])
            self.replay.load_state_dict(state["replay"])
            self.replay.open = [False] * len(self.envs)  # every env starts a new episode
        checkpoint.set_rng_state(state["rng"], self._generators())
        log.info("resumed from %s at step %d (episode %d)", path, self.step, self.episode)
        return True

    def _write_results(self, status: str, final: dict | None, error: str | None = None) -> None:
        health = {}
        if self.learns:
            for net, g in self.agent.guarded_steps().items():
                health[net] = {k: float(v) for k, v in g.health().items()}
        alerts = {tags.alert(net, "cnn", lvl): int(h.get(f"alert_{lvl}_count", 0))
                  for net, h in health.items() for lvl in ("warning", "critical")}
        results = {
            "status": status, "step": self.step, "total_steps": self.cfg.trainer.total_steps,
            "episodes": self.episode, "seed": self.cfg.seed,
            "final_eval": final, "final_eval_by_route": self.final_by_route or None,
            "best_eval": max(self.evals, key=lambda e: e["mean_reward"], default=None),
            "evals": self.evals,
            "alerts": {k: v for k, v in alerts.items() if v},
            "nonfinite_skips": {net: int(h["nonfinite_total"]) for net, h in health.items()},
            "updates": getattr(self.agent, "num_updates", 0),
            # Parameters per network and part: validate skips the dead-part check where there are none.
            "parameters": {net: {part: sum(p.numel() for p in ps) for part, ps in g.clipper.parts.items()}
                           for net, g in (self.agent.guarded_steps().items() if self.learns else [])},
            "reconnects": self.reconnects, "wall_time_s": self.elapsed(), "error": error,
        }
        # HParams once per run, when it finishes: a stopped or failed session writing them too would
        # leave a resumed run with two records at step 0 (an interrupted run differing from a whole one).
        if hasattr(self, "logger") and self.hparams and status == "finished":
            # Only metrics the run wrote at least once: an eval metric undefined in every phase (no TTC
            # without an obstacle ahead) is never written, and a declared but empty column misleads.
            written = {k for e in self.evals for k, v in e.items()
                       if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}
            metric_tags = [f"eval/{k}" for k in sorted(written)] or [tags.EVAL_MEAN_REWARD]
            self.logger.hparams(self.hparams, metric_tags)
        tmp = self.run_dir / f".{RESULTS}.tmp"
        tmp.write_text(json.dumps(finite_or_none(results), indent=2, default=_json_default))
        tmp.replace(self.run_dir / RESULTS)

    def _stop(self, reason: str, checkpoint: bool = True) -> float:
        """Stop for a signal. ``checkpoint=False``: mid-episode, past the grace period; the last
        checkpoint (an episode boundary) stays what a resume continues from, so that stays exact."""
        if checkpoint:
            self._checkpoint()
            log.warning("stopped by %s at step %d, at an episode boundary; checkpoint saved", reason, self.step)
        else:
            reason += f"; mid-episode, so the run resumes from its checkpoint at step {self._checkpoint_step}"
            log.warning("stopped by %s (the frames since are redone on resume)", reason)
        self._write_results("stopped", None, error=reason)
        chained = self._chained_handlers.get(self.stop_signal)
        if callable(chained):  # e.g. submitit's preemption handler: requeue, now that we checkpointed
            chained(self.stop_signal, None)
        return math.nan

    def _install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT, and SIGUSR2 (submitit's preemption and timeout signal): stop at the end of the
        episode in progress (within trainer.stop_grace_s; see the module docstring), then exit or hand
        over to the handler that was there before (submitit's, which requeues the job; the requeued job
        resumes from our checkpoint)."""
        self._chained_handlers: dict[int, object] = {}

        def handler(signum, _frame):
            self.stop_signal = signum
            self._signals += 1
            if self._signals == 1:
                self._signal_at = time.monotonic()
                log.warning("%s: finishing the episode in progress (at most trainer.stop_grace_s=%gs), then "
                            "checkpoint and stop; signal again to stop at once", signal.Signals(signum).name,
                            self.cfg.trainer.stop_grace_s)

        signals = [signal.SIGTERM, signal.SIGINT]
        if hasattr(signal, "SIGUSR2") and callable(signal.getsignal(signal.SIGUSR2)):
            signals.append(signal.SIGUSR2)
        for sig in signals:
            try:
                previous = signal.signal(sig, handler)
            except ValueError:  # not the main thread (some launchers): leave the handlers alone
                continue
            if sig == getattr(signal, "SIGUSR2", None):
                self._chained_handlers[sig] = previous


class EpisodeTally:
    """Return, length (env frames) and reward components of one training episode."""

    def __init__(self, index: int = 0):
        self.index = index  # which training episode (its seed)
        self.total, self.length, self.success = 0.0, 0, False
        self.last_frames = 0  # env frames of the latest agent step
        self.components: dict[str, float] = {}

    def add(self, reward: float, info: dict) -> None:
        self.total += float(reward)
        frames = frames_of(info) or [(reward, info)]
        self.last_frames = len(frames)
        self.length += len(frames)
        for _, frame in frames:
            self.success = self.success or bool(frame.get("is_success", False))
            for k, v in frame.get("reward_components", {}).items():
                self.components[k] = self.components.get(k, 0.0) + float(v)


def eval_seeds(seed: int, n: int) -> list[int]:
    """The episode seeds of every evaluation phase of a run with this seed (the same at each phase)."""
    return [seed * 7919 + EVAL_SEED_OFFSET + i for i in range(n)]


def learning_reward(reward: float, scale: float, clip: float | None) -> float:
    """What the agent learns from: the env's reward times trainer.reward_scale, then clipped to
    +-trainer.reward_clip."""
    r = reward * scale
    return r if clip is None else min(max(r, -clip), clip)


def crossed(previous: int, step: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (previous, step]: with one frame per step, step % every == 0."""
    return bool(every) and step // every > previous // every


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch sees no CUDA device; use device=cpu or device=auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
