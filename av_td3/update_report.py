"""What a run reports about its updates, once per ``trainer.log_every_updates``: the losses, Q-values and
gradient norms the agent returned (one host sync, ``logger.UpdateLog``), the clip limits, the gradient
alerts that fired, and the non-finite guard's skips; too many non-finite updates in a row stop the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from av_td3 import tags
from av_td3.config import Config
from av_td3.logger import RunLogger, UpdateLog


class NonFiniteError(RuntimeError):
    """Too many consecutive updates had a non-finite loss or gradient."""


class UpdateReporter:
    def __init__(self, cfg: Config, agent, logger: RunLogger):
        self.cfg, self.agent, self.logger = cfg, agent, logger
        self.updates = UpdateLog()
        self.logged_at = getattr(agent, "num_updates", 0)  # the update count at the last report

    def record(self, metrics, step: int) -> None:
        self.updates.record(metrics, step)

    def due(self) -> bool:
        return self.agent.num_updates - self.logged_at >= self.cfg.trainer.log_every_updates

    def pending(self) -> bool:
        return getattr(self.agent, "num_updates", 0) > self.logged_at

    def report(self, step: int, on_fatal: Callable[[str], None], checkpoint: Path) -> None:
        """Write the interval's update tags and alerts at ``step``; on too many non-finite updates in a
        row call ``on_fatal(reason)`` (which checkpoints) and raise NonFiniteError."""
        guarded = self.agent.guarded_steps()
        critic, actor, health = self.updates.fetch({n: g.health() for n, g in guarded.items()})
        self.logger.scalars(critic | self._limits("critic"), self.updates.critic_step)
        if actor:
            self.logger.scalars(actor | self._limits("actor"), self.updates.actor_step)
        alerts: dict[str, float] = {}  # written only when they fire; the value is the offending norm
        for net, h in health.items():
            for level in ("warning", "critical"):
                if h.get(f"alert_{level}_peak", 0.0) > 0.0:
                    alerts[tags.alert(net, "cnn", level)] = h[f"alert_{level}_peak"]
            if h["nonfinite_max_run"] > 0:  # value: the longest run of skipped updates
                alerts[tags.NONFINITE_ALERT] = max(alerts.get(tags.NONFINITE_ALERT, 0.0), h["nonfinite_max_run"])
                alerts[tags.nonfinite_skips(net)] = h["nonfinite_total"]
            guarded[net].reset_interval()
        self.logger.scalars(alerts, step)
        self.logged_at = self.agent.num_updates
        limit = self.cfg.trainer.max_consecutive_nonfinite
        for net, h in health.items():
            if h["nonfinite_max_run"] >= limit:
                on_fatal(f"{net}: non-finite loss or gradient")
                raise NonFiniteError(
                    f"{int(h['nonfinite_max_run'])} consecutive {net} updates had a non-finite loss or "
                    f"gradient (limit trainer.max_consecutive_nonfinite={limit}); stopped at step {step}, "
                    f"checkpoint in {checkpoint}")

    def _limits(self, net: str) -> dict[str, float]:
        limit = getattr(self.cfg.clipping, net).limit()
        return {} if limit is None else {tags.clip_limit(net): float(limit)}
