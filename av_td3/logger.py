"""One logger for a run: TensorBoard scalars, CSV rows and console lines from one call.

``UpdateLog`` holds the device tensors the agent's updates return and fetches them with one host sync
per logging interval; it writes actor tags at the step of the last actor update in the interval (so they
only ever exist on actor-update steps) and alert tags only when an alert fired.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from av_td3 import tags
from av_td3.rundir import table_file

log = logging.getLogger("av_td3")


class RunLogger:
    def __init__(self, run_dir: Path, purge_step: int | None = None):
        self.run_dir = run_dir
        self._headers: dict[str, list[str]] = {}  # table -> its CSV's columns
        # purge_step: on resume, TensorBoard (and our event reader) drop the earlier files' events at
        # steps >= purge_step (those after the checkpoint), so curves continue without duplicated
        # steps. CSV rows likewise.
        # In the run directory itself, so TensorBoard names the run by its job ("clip_arm=none,seed=0"),
        # not ".../tb". Runs from before keep their events in RUN/tb/; the readers take both.
        self.tb = SummaryWriter(str(run_dir), purge_step=purge_step)
        if purge_step is None:  # a resumed run's first segment declared the layout already
            self.tb.add_custom_scalars(tags.custom_scalars_layout())
        if purge_step is not None:
            for path in run_dir.glob("*.csv"):
                _drop_rows_from(path, purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.tb.add_scalar(tag, value, step)

    def row(self, table: str, values: dict[str, float | int | str], console: bool = True) -> None:
        """Append a row to ``<table>.csv`` and print it. The header is the file's (the first row's keys);
        a row with keys it lacks (a run resumed by a version that reports more) widens it, the earlier
        rows left blank there, so no value lands under another column's name."""
        path = self.run_dir / table_file(table)
        header = self._headers.get(table) or _header(path)
        if header is not None and not set(values) <= set(header):
            header = header + [k for k in values if k not in header]
            _widen(path, header)
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header or list(values))
            if header is None:
                writer.writeheader()
            writer.writerow(values)
        self._headers[table] = header or list(values)
        if console:
            log.info("%s | %s", table, "  ".join(f"{k}={_fmt(v)}" for k, v in values.items()))

    def hparams(self, hparams: dict[str, float | int | str | bool], metric_tags: list[str]) -> None:
        """Register this run with TensorBoard's HParams dashboard: its group choices and key settings,
        and the scalar tags (already logged) that the dashboard shows as its metrics."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        for summary in hparams_summaries(hparams, {tag: 0.0 for tag in metric_tags}):
            self.tb.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def _drop_rows_from(path: Path, step: int) -> None:
    """Remove the rows a crashed process wrote at or after ``step`` (the resumed run rewrites them)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    kept = [r for r in rows if int(r["step"]) < step]
    if len(kept) == len(rows):
        return
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    tmp.replace(path)


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# Agent metric key -> tag. Keys "<net>_<stat>" come from GuardedStep / GradientClipper.
def _grad_tag(net: str, stat: str) -> str | None:
    if stat in ("before", "after"):
        return tags.grad_norm(net, stat.upper())
    if stat.startswith(("before_", "after_")):
        when, part = stat.split("_", 1)
        return tags.grad_norm(net, when.upper(), part)
    if stat.startswith("update_ratio"):
        part = stat[len("update_ratio_"):] or None
        return tags.update_ratio(net, part)
    return {"clip_ratio": tags.clip_ratio(net), "clipped": tags.clipped(net)}.get(stat)


STATS = ("before", "after", "before_cnn", "after_cnn", "before_mlp", "after_mlp", "clip_ratio", "clipped",
         "update_ratio", "update_ratio_cnn", "update_ratio_mlp")


CRITIC_TAGS = {"critic_loss": tags.CRITIC_LOSS, "q1": tags.Q1, "q2": tags.Q2, "aux_loss": tags.AUX_LOSS}
CRITIC_TAGS |= {f"critic_{s}": t for s in STATS if (t := _grad_tag("critic", s))}
ACTOR_TAGS = {"actor_loss": tags.ACTOR_LOSS, "actor_pre_tanh": tags.ACTOR_PRE_TANH}
ACTOR_TAGS |= {f"actor_{s}": t for s in STATS if (t := _grad_tag("actor", s))}


class UpdateLog:
    """The latest critic and actor metrics of a logging interval, still on the device."""

    def __init__(self):
        self.critic: dict[str, torch.Tensor] = {}
        self.critic_step = -1
        self.actor: dict[str, torch.Tensor] = {}
        self.actor_step = -1

    def record(self, metrics: dict[str, torch.Tensor], step: int) -> None:
        # Merged, not replaced: a measurement taken on fewer updates (the update ratios) stays until the
        # interval is fetched; everything else is the interval's latest update's.
        self.critic, self.critic_step = {**self.critic, **metrics}, step
        if "actor_loss" in metrics:
            self.actor, self.actor_step = {**self.actor, **metrics}, step

    def fetch(self, health: dict[str, dict[str, torch.Tensor]]) -> tuple[dict, dict, dict]:
        """One host sync for everything: (critic values, actor values or {}, health values per net)."""
        named: list[tuple[str, torch.Tensor]] = [(k, self.critic[k]) for k in CRITIC_TAGS if k in self.critic]
        named += [(k, self.actor[k]) for k in ACTOR_TAGS if k in self.actor]
        named += [(f"{net}/{k}", v) for net, h in health.items() for k, v in h.items()]
        if not named:
            return {}, {}, {}
        values = torch.stack([v.detach().float().reshape(()) for _, v in named]).cpu().tolist()
        fetched = dict(zip((k for k, _ in named), values))
        critic = {CRITIC_TAGS[k]: fetched[k] for k in CRITIC_TAGS if k in fetched}
        actor = {ACTOR_TAGS[k]: fetched[k] for k in ACTOR_TAGS if k in self.actor}
        out_health: dict[str, dict[str, float]] = {net: {} for net in health}
        for key, value in fetched.items():
            if "/" in key:
                net, k = key.split("/", 1)
                out_health[net][k] = value
        self.critic, self.actor = {}, {}
        return critic, actor, out_health


def _header(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    with path.open(newline="") as f:
        return next(csv.reader(f), None)


def _widen(path: Path, header: list[str]) -> None:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
