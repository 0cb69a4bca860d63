"""Where a run stands, and what it leaves in its directory: the counters (frames, episodes, evaluations,
wall time over every segment, lost episodes), the checkpoint that holds the whole run state (with the
agent, the replay buffer and every random stream), and results.json."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from av_td3 import checkpoint, tags
from av_td3.jsonsafe import jsonable
from av_td3.rundir import CHECKPOINT, RESULTS


class RunState:
    def __init__(self, run_dir: Path, seed: int, total_steps: int, config: dict | None = None):
        self.run_dir, self.seed, self.total_steps = run_dir, seed, total_steps
        # The composed config (plain dicts), saved with every checkpoint; ``resumed_config`` is the one the
        # checkpoint resumed from was saved with (None: no resume, or a checkpoint that holds none).
        self.config, self.resumed_config = config, None
        self.step = 0  # env frames so far
        self.episode = 0  # training episodes finished
        self.started = 0  # training episodes started (seeds: the n-th episode started gets seed n)
        self.evals: list[dict] = []  # one row per evaluation phase
        self.final_by_route: dict[str, dict] = {}  # the final evaluation per route (with several routes)
        self.final_by_split: dict[str, dict] = {}  # trainer.final_eval_splits: {"overall", "by_route"} each
        self.wall_time = 0.0  # seconds spent in earlier segments of this run (resume)
        self.segment_start = time.monotonic()
        self.reconnects = 0  # env episodes lost to simulator failures (CARLA) and rebuilt
        self.checkpoint_step = 0  # the step the last checkpoint holds (what a resume continues from)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def elapsed(self) -> float:
        """Wall seconds of this run over every segment so far (earlier ones from the checkpoint)."""
        return self.wall_time + time.monotonic() - self.segment_start

    def save(self, agent, replay, generators: dict[str, np.random.Generator]) -> None:
        state = {"step": self.step, "episode": self.episode, "evals": self.evals, "wall_time": self.elapsed(),
                 "reconnects": self.reconnects, "rng": checkpoint.rng_state(generators), "config": self.config}
        if replay is not None:
            state["agent"] = agent.state_dict()
            state["replay"] = replay.state_dict()
        checkpoint.save(state, self.checkpoint_path)
        self.checkpoint_step = self.step

    def resume(self, agent, replay, generators: dict[str, np.random.Generator]) -> bool:
        """Load the checkpoint if the run directory has one; whether it did."""
        if not self.checkpoint_path.exists():
            return False
        state = checkpoint.load(self.checkpoint_path)
        self.step, self.episode = int(state["step"]), int(state["episode"])
        self.started = self.episode  # checkpoints are taken with every env at an episode boundary
        self.checkpoint_step = self.step
        self.evals, self.wall_time = list(state["evals"]), float(state["wall_time"])
        self.reconnects = int(state["reconnects"])
        self.resumed_config = state.get("config")
        if replay is not None:
            agent.load_state_dict(state["agent"])
            replay.load_state_dict(state["replay"])
            replay.drop_episode()  # every env starts a new episode
        checkpoint.set_rng_state(state["rng"], generators)
        return True

    def episode_seed(self, index: int) -> int:
        """The seed of the run's ``index``-th training episode (what makes a resume replay exactly)."""
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])

    def write_results(self, status: str, final: dict | None, agent, error: str | None = None) -> None:
        health = {}
        learns = hasattr(agent, "guarded_steps")
        if learns:
            for net, g in agent.guarded_steps().items():
                health[net] = {k: float(v) for k, v in g.health().items()}
        alerts = {tags.alert(net, "cnn", lvl): int(h.get(f"alert_{lvl}_count", 0))
                  for net, h in health.items() for lvl in ("warning", "critical")}
        results = {
            "status": status, "step": self.step, "total_steps": self.total_steps,
            "episodes": self.episode, "seed": self.seed,
            "final_eval": final, "final_eval_by_route": self.final_by_route or None,
            "final_eval_by_split": self.final_by_split or None,
            "best_eval": max(self.evals, key=lambda e: e["mean_reward"], default=None),
            "evals": self.evals,
            "alerts": {k: v for k, v in alerts.items() if v},
            "nonfinite_skips": {net: int(h["nonfinite_total"]) for net, h in health.items()},
            "updates": getattr(agent, "num_updates", 0),
            # Parameters per network and part: validate skips the dead-part check where there are none.
            "parameters": {net: g.parameter_counts() for net, g in (agent.guarded_steps().items() if learns else [])},
            "reconnects": self.reconnects, "wall_time_s": self.elapsed(), "error": error,
        }
        tmp = self.run_dir / f".{RESULTS}.tmp"
        tmp.write_text(json.dumps(jsonable(results), indent=2, default=_json_default))
        tmp.replace(self.run_dir / RESULTS)

    def written_metrics(self) -> list[str]:
        """The eval/ tags this run wrote at least once (a metric undefined in every phase never was)."""
        written = {k for e in self.evals for k, v in e.items()
                   if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}
        return [f"eval/{k}" for k in sorted(written)] or [tags.EVAL_MEAN_REWARD]


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
