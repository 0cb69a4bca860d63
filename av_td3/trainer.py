"""The one shared loop: act, store, update, evaluate, checkpoint, log.

Warm-up actions until ``learning_starts``, then the agent's policy plus the exploration process
(``exploration.py``); ``updates_per_step`` updates per agent step; each agent action held for
``action_repeat`` env frames, and every step count (budgets, intervals, logged steps) in env frames;
deterministic evaluation on a separate env instance every ``eval_every`` frames (no buffer writes);
a checkpoint of the whole run state every ``checkpoint_every`` frames, taken at the next episode boundary
of every env so a resumed run replays exactly what an uninterrupted one would have done (every episode
is reset with a seed derived from the run's seed and the episode's index). A stop signal is exact too
(``stop_control.py``).

The rooms around the loop, one job each: ``env_pool.py`` (the train and eval envs), ``run_state.py``
(counters, checkpoint, resume, results.json), ``stop_control.py`` (signals and the grace period),
``update_report.py`` (the update tags and alerts, once per logging interval), ``progress.py`` (the bar).
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.contrib.logging import logging_redirect_tqdm

from av_td3 import tags, video
from av_td3.agents.build import build_agent
from av_td3.agents.spec import AgentSpec
from av_td3.config import Config
from av_td3.config.saved import changed_settings, describe_changes
from av_td3.env_pool import EnvPool
from av_td3.envs.action_repeat import frames_of
from av_td3.envs.contract import PRIVILEGED_TARGETS, privileged_targets
from av_td3.envs.errors import EnvFailed, EpisodeLost
from av_td3.envs.factory import build_run_env
from av_td3.envs.route_file import eval_routes
from av_td3.evaluation import driven, evaluate_by_route
from av_td3.logger import RunLogger
from av_td3.metrics import DRIVING_KEY, episode_end
from av_td3.progress import Progress, postfix
from av_td3.replay import ReplayBuffer
from av_td3.rundir import DONE, EVAL_TABLE, TRAIN_TABLE
from av_td3.run_state import RunState
from av_td3.stop_control import StopControl
from av_td3.update_report import NonFiniteError, UpdateReporter  # noqa: F401  (NonFiniteError: the run's error)

log = logging.getLogger("av_td3")

# Settings a resume may change without changing what the run learns: a longer budget, the console, threads.
RESUME_MAY_CHANGE = ("trainer.total_steps", "trainer.progress_bar", "torch_threads", "device")
EVAL_SEED_OFFSET = 1_000_003  # eval episodes use their own seed stream, the same at every evaluation


class Trainer:
    def __init__(self, raw_cfg: DictConfig, cfg: Config, run_dir: Path, job_num: int = 0,
                 hparams: dict | None = None):
        self.cfg, self.run_dir = cfg, run_dir
        self.hparams = hparams or {}  # group choices and key settings, for TensorBoard's HParams
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.pool = EnvPool(cfg, job_num)
        try:
            env = self.pool.envs[0]
            self.agent = build_agent(raw_cfg, cfg, env.observation_space, env.action_space, self.device)
            self.learns = hasattr(self.agent, "update")
            spec = AgentSpec.from_spaces(env.observation_space, env.action_space, self.device, cfg.clipping)
            targets = len(PRIVILEGED_TARGETS) if getattr(self.agent, "wants_targets", False) else 0
            self.replay = (ReplayBuffer(cfg.trainer.replay_capacity, spec.image_shape, spec.vector_size,
                                        spec.action_dim, self.device, seed=cfg.seed, streams=len(self.pool),
                                        target_size=targets, frame_stride=cfg.env.frame_stride)
                           if self.learns else None)
            self.eval_routes = eval_routes(cfg.env)  # None: the eval env's own road
            self.state = RunState(run_dir, cfg.seed, cfg.trainer.total_steps,
                                  OmegaConf.to_container(raw_cfg, resolve=True))
            self.resumed = self.state.resume(self.agent, self.replay, self.pool.generators())
            if self.resumed:
                log.info("resumed from %s at step %d (episode %d)", self.state.checkpoint_path, self.state.step,
                         self.state.episode)
                self._warn_changed_config(raw_cfg)
            # Everything up to and including the checkpoint's step is kept; later events are replaced.
            self.logger = RunLogger(run_dir, purge_step=self.state.step + 1 if self.resumed else None)
        except BaseException:
            self.pool.close()
            raise
        self.reporter = UpdateReporter(cfg, self.agent, self.logger) if self.learns else None
        self.stop = StopControl(cfg.trainer.stop_grace_s)
        self.progress = Progress(cfg.trainer.progress_bar, cfg.trainer.learning_starts, cfg.trainer.total_steps)

    def _warn_changed_config(self, raw_cfg: DictConfig) -> None:
        """A resume composes its command again, so a default changed since the run started (or an override
        added) changes the run part way: name each such setting (beyond RESUME_MAY_CHANGE) in one line."""
        if self.state.resumed_config is None:
            return
        changed = changed_settings(self.state.resumed_config, self.state.config, RESUME_MAY_CHANGE, raw_cfg)
        if changed:
            log.warning("resumed with settings the run's checkpoint was not saved with (it trains on with "
                        "these from step %d): %s", self.state.step,
                        describe_changes(changed))

    # Names the entrypoint and the benchmarks read.
    @property
    def step(self) -> int:
        return self.state.step

    @property
    def evals(self) -> list[dict]:
        return self.state.evals

    @property
    def stop_signal(self) -> int | None:
        return self.stop.signal

    def elapsed(self) -> float:
        return self.state.elapsed()

    # --- the loop -------------------------------------------------------------------------------------
    def run(self) -> float:
        """Train to ``trainer.total_steps`` (from the checkpoint, if the run dir held one); return the
        final evaluation's mean return (NaN when stopped by a signal)."""
        t, state = self.cfg.trainer, self.state
        self.stop.install()
        log.info("start: step %d of %d on %s, %d torch threads; run dir %s", state.step, t.total_steps,
                 self.device, torch.get_num_threads(), self.run_dir)
        if self.cfg.env.worker:
            log.info("env workers (env.worker=true): train pid %s, eval pid %s", self.pool.envs[0].pid,
                     self.pool.eval_env.pid)
        self.progress.start(state.step, self._postfix())
        start, start_step = time.monotonic(), state.step
        state.segment_start = start
        # Log lines go through tqdm.write while a bar is shown, so they never land on the bar's line.
        # Only the root logger: av_td3's records reach it (a handler on both would print each line twice).
        redirect = logging_redirect_tqdm(loggers=[logging.getLogger()]) if t.progress_bar else nullcontext()
        try:
            with redirect:
                # Per env: (observation, episode tally); None while it waits at an episode boundary for the
                # others (a checkpoint or a stop is due), so the checkpoint is at a boundary of every env.
                episodes: list = [self._new_episode(k) for k in range(len(self.pool))]
                checkpoint_due = False
                while state.step < t.total_steps and self.learns:
                    previous = state.step
                    stepped, ended = self._collect(episodes)
                    if not stepped:
                        continue
                    self.progress.advance(previous, state.step, self._postfix())
                    if not t.update_while_stepping:  # else _collect ran them while the envs stepped
                        self._update(stepped, state.step)
                    # Evaluate before a checkpoint can be taken at this step, so the checkpoint holds it.
                    if crossed(previous, state.step, t.eval_every) and state.step < t.total_steps:
                        self._evaluate()
                        self.progress.show(self._postfix())
                    checkpoint_due |= crossed(previous, state.step, t.checkpoint_every)
                    for k, end in ended:
                        self._log_episode(episodes[k][1], end)
                        state.episode += 1
                        episodes[k] = None if checkpoint_due or self.stop.requested else self._new_episode(k)
                    if ended and all(e is None for e in episodes):  # every env at an episode boundary
                        self._checkpoint()
                        checkpoint_due = False
                        if self.stop.requested:  # at an episode boundary: the resume is exact
                            return self._stopped()
                        episodes = [self._new_episode(k) for k in range(len(self.pool))]
                    if ended:
                        self.progress.show(self._postfix())
                    if self.stop.overdue():
                        return self._stopped(checkpoint=False)
                self.progress.close()
                return self._finish(start, start_step)
        except EnvFailed as e:  # the simulator kept failing: keep what was learned, say why, stop
            if self.replay is not None:
                self.replay.drop_episode()  # episodes in flight are gone; a resume starts anew
            self._checkpoint()
            state.write_results("failed", None, self.agent, error=str(e))
            raise EnvFailed(f"{e}; stopped at step {state.step} with a checkpoint in {state.checkpoint_path}: "
                            "relaunch the same command to resume once the simulator works") from e
        finally:
            self.progress.close()
            self.pool.close()
            self.logger.close()

    def _collect(self, episodes: list) -> tuple[int, list[tuple[int, int]]]:
        """One agent step of every active env: act, step, store. (How many envs stepped, the (env, frame
        count) of the episodes that ended.)"""
        t, state = self.cfg.trainer, self.state
        active = [k for k, e in enumerate(episodes) if e is not None]
        actions = {}
        for k in active:
            explorer = self.pool.explorers[k]
            actions[k] = (explorer.warmup_action() if state.step < t.learning_starts
                          else explorer.action(self.agent.act(episodes[k][0]), state.step))
        if t.update_while_stepping:  # this step's updates run while the env workers step
            self.pool.send(actions)
            # at the frame count the step reaches (fewer frames when an episode ends within the repeat)
            self._update(len(actions), state.step + t.action_repeat * len(actions))
            results = self.pool.receive()
        else:
            results = self.pool.step(actions)
        stepped, ended = 0, []
        for k in active:
            obs, ep = episodes[k]
            if isinstance(results[k], EpisodeLost):  # the simulator failed and was rebuilt
                self._episode_lost(results[k], "train")
                self.replay.drop_episode(k)  # the transition in flight is dropped
                episodes[k] = self._new_episode(k, again=ep)
                continue
            next_obs, reward, terminated, truncated, info = results[k]
            targets = privileged_targets(info, self.cfg.env.obstacle_range) if self.replay.target_size else None
            self.replay.add(obs, actions[k], learning_reward(reward, t.reward_scale, t.reward_clip), next_obs,
                            terminated, truncated, stream=k, targets=targets)
            ep.add(reward, info)
            state.step += ep.last_frames
            stepped += 1
            if terminated or truncated:  # logged at the frame count it ended at: distinct steps
                ended.append((k, state.step))
            else:
                episodes[k] = (next_obs, ep)
        return stepped, ended

    def _update(self, stepped: int, step: int) -> None:
        """``updates_per_step`` updates per env that stepped (so the update-to-data ratio does not depend
        on num_envs), and the update report when one is due; ``step``: the frame count after the step."""
        t = self.cfg.trainer
        if step < t.learning_starts:
            return
        for _ in range(t.updates_per_step * stepped):
            batch = self.replay.sample(self.agent.batch_size, self.agent.n_step, self.agent.gamma,
                                       following=self.agent.wants_following)
            self.reporter.record(self.agent.update(*batch), step)
        if self.reporter.due():
            self._report_updates()

    def _finish(self, start: float, start_step: int) -> float:
        if self.learns and self.reporter.pending():
            self._report_updates()
        final = self._evaluate(final=True)
        for split in self.cfg.trainer.final_eval_splits:
            self._evaluate_split(split)
        self._checkpoint()
        if self.hparams:  # once per run, when it finishes (a stopped segment's would leave two records)
            self.logger.hparams(self.hparams, self.state.written_metrics())
        self.state.write_results("finished", final, self.agent)
        (self.run_dir / DONE).touch()  # last: a run with DONE is complete
        if self.state.reconnects:
            log.info("%d episodes were lost to simulator failures and replaced (results.json reconnects)",
                     self.state.reconnects)
        sps = (self.state.step - start_step) / max(time.monotonic() - start, 1e-9)
        log.info("done: %d steps (%.1f steps/s this segment), final eval return %.3f", self.state.step, sps,
                 final["mean_reward"])
        return float(final["mean_reward"])

    # --- episodes -------------------------------------------------------------------------------------
    def _new_episode(self, k: int = 0, again: "EpisodeTally | None" = None) -> tuple[dict, "EpisodeTally"]:
        """Reset train env ``k`` for the next episode (its seed: the number of episodes started), or with
        ``again`` for the same episode anew (after the simulator lost it: the same seed)."""
        index = again.index if again is not None else self.state.started
        if again is None:
            self.state.started += 1
        obs = self.pool.reset(k, self.state.episode_seed(index), lambda e: self._episode_lost(e, "train"))
        return obs, EpisodeTally(index)

    def _episode_lost(self, error: EpisodeLost, role: str) -> None:
        self.state.reconnects += 1
        log.warning("%s episode lost at step %d (%s); reconnect %d, the %s", role, self.state.step, error,
                    self.state.reconnects, "episode is run again" if role == "eval" else "transition is dropped")
        self.logger.scalars({tags.RECONNECTS: float(self.state.reconnects)}, self.state.step)

    def _log_episode(self, ep: "EpisodeTally", step: int) -> None:
        values = {tags.EPISODE_REWARD: ep.total, tags.EPISODE_LENGTH: float(ep.length),
                  tags.EXPLORATION_NOISE: self.pool.explorers[0].std(step)}
        values |= {tags.reward_component(k): v for k, v in ep.components.items()}
        self.logger.scalars(values, step)
        row = {"step": step, "episode": self.state.episode, "return": ep.total, "length": ep.length,
               "success": int(ep.success)}
        if ep.driving:  # how it ended, so a run's training episodes can be read as its evaluations are
            row["ended"] = ep.ended()
        self.logger.row(TRAIN_TABLE, row, console=not self.cfg.trainer.progress_bar)

    # --- evaluation, reports, checkpoints -------------------------------------------------------------
    def _episodes_on(self, env, routes, final: bool, recorder=None) -> tuple[dict, dict, int]:
        """(summary, per-route summaries, episodes) of the policy on ``env``'s ``routes``: eval_episodes
        of them, or final_eval_episodes for the final evaluation, with the run's evaluation seeds."""
        t = self.cfg.trainer
        n = t.final_eval_episodes if final and t.final_eval_episodes else t.eval_episodes
        summary, by_route = evaluate_by_route(driven(self.agent), env, eval_seeds(self.cfg.seed, n), recorder,
                                              on_lost=lambda e: self._episode_lost(e, "eval"),
                                              routes=routes)
        return summary, by_route, n

    def _evaluate(self, final: bool = False) -> dict:
        t, step = self.cfg.trainer, self.state.step
        recorder = video.EpisodeFrames() if t.eval_video else None
        summary, by_route, n = self._episodes_on(self.pool.eval_env, self.eval_routes, final, recorder)
        if recorder is not None:
            fps = self.pool.eval_env.metadata.get("render_fps", 20) / t.action_repeat  # a frame per agent step
            video.write(recorder, self.run_dir, step, fps, self.logger.tb)
        # A metric undefined this phase (no obstacle ahead: no TTC; no success: no completion time) is
        # left out of TensorBoard rather than written as NaN, which would look like a diverged run.
        self.logger.scalars({f"eval/{k}": v for k, v in summary.items() if math.isfinite(v)}, step)
        self.logger.row(EVAL_TABLE, {"step": step, **summary}, console=False)  # every metric: eval.csv
        line = f"eval | step={step} return={summary['mean_reward']:.1f}"
        if "success_rate" in summary:
            line += (f" success={summary['success_rate']:.0%} collisions/km={summary['collisions_per_km']:.3g} "
                     f"speed={summary['avg_speed_kmh']:.1f} km/h met_traffic={summary['encounter_rate']:.0%} "
                     f"failed_by=crash:{summary['crash_rate']:.0%},off_road:{summary['off_road_rate']:.0%},"
                     f"timeout:{summary['timeout_rate']:.0%}")
        log.info("%s (%d episodes)", line, n)
        self.logger.flush()
        self.state.evals.append({"step": step, **summary})
        if final:
            self.state.final_by_route = by_route
        return summary

    def _evaluate_split(self, split: str) -> None:
        """The final evaluation again, on the routes of another split (trainer.final_eval_splits)."""
        cfg = replace(self.cfg, env=replace(self.cfg.env, eval_routes=split))
        env = build_run_env(cfg, "eval")
        try:
            summary, by_route, _ = self._episodes_on(env, eval_routes(cfg.env), final=True)
        finally:
            env.close()
        self.logger.scalars({f"final/{split}/{k}": v for k, v in summary.items() if math.isfinite(v)},
                            self.state.step)
        log.info("final eval on the %s routes | return=%.1f success=%.0f%% collisions/km=%.3g", split,
                 summary["mean_reward"], 100 * summary.get("success_rate", math.nan),
                 summary.get("collisions_per_km", math.nan))
        self.state.final_by_split[split] = {"overall": summary, "by_route": by_route}

    def _report_updates(self) -> None:
        def fatal(reason: str) -> None:
            self._checkpoint()
            self.state.write_results("failed", None, self.agent, error=reason)

        self.reporter.report(self.state.step, fatal, self.state.checkpoint_path)

    def _checkpoint(self) -> None:
        self.state.save(self.agent, self.replay, self.pool.generators())
        log.debug("checkpoint at step %d", self.state.step)

    def _stopped(self, checkpoint: bool = True) -> float:
        """Stop for a signal. ``checkpoint=False``: mid-episode, past the grace period; the last
        checkpoint (an episode boundary) stays what a resume continues from, so that stays exact."""
        reason = f"signal {self.stop.name}"
        if checkpoint:
            self._checkpoint()
            log.warning("stopped by %s at step %d, at an episode boundary; checkpoint saved", reason, self.state.step)
        else:
            reason += f"; mid-episode, so the run resumes from its checkpoint at step {self.state.checkpoint_step}"
            log.warning("stopped by %s (the frames since are redone on resume)", reason)
        self.state.write_results("stopped", None, self.agent, error=reason)
        self.stop.hand_over()  # e.g. submitit's preemption handler: requeue, now that we checkpointed
        return math.nan

    def _postfix(self) -> str:
        return postfix(self.state.episode, self.state.evals)


class EpisodeTally:
    """Return, length (env frames), reward components and how one training episode ended."""

    def __init__(self, index: int = 0):
        self.index = index  # which training episode (its seed)
        self.total, self.length, self.success = 0.0, 0, False
        self.driving = self.collision = self.off_road = False  # driving: its steps report StepQuantities
        self.last_frames = 0  # env frames of the latest agent step
        self.components: dict[str, float] = {}

    def add(self, reward: float, info: dict) -> None:
        self.total += float(reward)
        frames = frames_of(info) or [(reward, info)]
        self.last_frames = len(frames)
        self.length += len(frames)
        for _, frame in frames:
            self.success = self.success or bool(frame.get("is_success", False))
            if DRIVING_KEY in frame:
                self.driving = True
                self.collision = self.collision or bool(frame["collision"])
                self.off_road = self.off_road or bool(frame["off_road"])
            for k, v in frame.get("reward_components", {}).items():
                self.components[k] = self.components.get(k, 0.0) + float(v)

    def ended(self) -> str:
        """How it ended, as an evaluation's rates count it (``metrics.episode_end``)."""
        return episode_end(self.success, self.collision, self.off_road)


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
