"""Finding and loading run directories: shared by ``av-td3 validate`` and ``av-td3 compare``.

A run directory's layout is av_td3/rundir.py (event files in RUN/ or, for runs of early versions, RUN/tb/).
A multirun directory holds ``multirun.yaml`` and job directories at any depth. A plain TensorBoard log
directory (event files, no ``.hydra``) or a single event file also loads, without a config. A kept run
(results.json beside overrides.yaml, ``av-td3 keep``) loads with its results and config; its only scalars
are its evaluations' (``eval/*``, from the eval.csv it keeps), so reports draw its learning curves.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from av_td3 import tags as tags_module
from av_td3.analysis.events import Series, event_files
from av_td3.analysis.events import read_scalars as _read_event_files
from av_td3.config.saved import flatten_saved_config
from av_td3.rundir import (CONFIG, DONE, ERROR, EVAL_TABLE, KEPT_CONFIG, KEPT_OVERRIDES,  # noqa: F401
                           OVERRIDES, RESULTS, TB, table_file)  # the layout, in one place

# "foreign": event files only (no .hydra, no results.json), as other TD3 code writes them: what the run
# reached is known only from its scalars.
# "unreadable": a run directory whose config or results.json cannot be read (listed with the reason,
# never fatal for the runs beside it).
STATUSES = ("finished", "failed", "stopped", "unfinished", "foreign", "unreadable")


class RunDirError(ValueError):
    """A run directory that cannot be used as one (unreadable config or results)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


@dataclass
class RunDir:
    path: Path  # the run directory (for a bare event file: the file)
    event_files: list[Path]
    config: dict[str, Any] = field(default_factory=dict)  # empty when the run has no .hydra/config.yaml
    config_path: Path | None = None
    overrides: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None
    done: bool = False
    error_line: str | None = None  # the first line of error.txt (the message)
    status: str = "foreign"  # one of STATUSES; "foreign" without a run directory (bare event files)
    kept: bool = False  # a kept run (av-td3 keep): results and config only, no process ever writes to it
    _cache: dict[str, Series | None] = field(default_factory=dict, repr=False)

    # --- settings from the run's own config ------------------------------------------------------------
    def setting(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def clipping(self, net: str):
        """The run's ``NetClipConfig`` for ``net`` (None without a config); RunDirError if invalid."""
        from av_td3.config.clipping import NetClipConfig
        from av_td3.config.errors import ConfigError

        if self.config_path is None:
            return None
        raw = self.setting(f"clipping.{net}")
        if raw is None:
            return NetClipConfig()  # the schema's default: no clipping
        try:
            cfg = NetClipConfig(**raw)
            cfg.check(f"clipping.{net}")
        except (TypeError, ConfigError) as e:
            raise RunDirError(self.config_path, f"clipping.{net}: {e}") from None
        return cfg

    def clip_limit(self, net: str, part: str | None = None) -> float | None:
        cfg = self.clipping(net)
        return None if cfg is None else cfg.limit(part)

    def flat_config(self) -> dict[str, Any]:
        """The composed config as dotted keys -> values (lists as tuples): what tells runs apart. A
        setting added later with a default that does not reproduce what the run did (``config/saved.py``) has
        the value the run ran with."""
        return flatten_saved_config(self.config)

    @property
    def foreign(self) -> bool:
        """Events only: written by other code (or a bare event file), nothing of ours beside them."""
        return self.status == "foreign"

    @property
    def has_config(self) -> bool:
        return self.config_path is not None

    @property
    def total_steps(self) -> int | None:
        return self.setting("trainer.total_steps")

    @property
    def seed(self) -> int | None:
        seed = self.setting("seed")
        return seed if seed is not None else (self.results or {}).get("seed")

    @property
    def last_step(self) -> int | None:
        """The step the run reached according to results.json (None without one)."""
        return None if self.results is None else self.results.get("step")

    # --- scalars -----------------------------------------------------------------------------------------
    def read_all(self) -> dict[str, Series]:
        """Every scalar series of the run (not cached: a long run's full set is large); a tag the run
        lacks is read from its older name where it has one (``tags.ALIASES``)."""
        data = _read_event_files(self.event_files)
        for alias, canonical in tags_module.ALIASES.items():
            if alias in data and canonical not in data:
                data[canonical] = data[alias]
        return data


def read_scalars(run: RunDir, tags: Iterable[str]) -> dict[str, Series]:
    """The series of ``tags`` that the run has (absent tags are left out), cached per run and tag, so
    repeated calls for a few tags re-read the files only for tags not asked for before."""
    tags = list(tags)
    missing = [t for t in tags if t not in run._cache]
    if missing:
        older = {a: c for a, c in tags_module.ALIASES.items() if c in missing}
        found = (_read_event_files(run.event_files, missing + list(older)) if run.event_files
                 else _read_eval_table(run.path / table_file(EVAL_TABLE), missing) if run.kept else {})
        for alias, canonical in older.items():
            found.setdefault(canonical, found.get(alias))
        for t in missing:
            run._cache[t] = found.get(t)
    return {t: run._cache[t] for t in tags if run._cache[t] is not None}


def _read_eval_table(path: Path, tags: list[str]) -> dict[str, Series]:
    """The ``eval/<metric>`` series of a kept run, from its eval.csv (one row per evaluation, the columns
    the trainer also writes as eval/ scalars; a blank or non-finite cell is a step the metric skipped, as
    the events leave it out). No wall times: NaN."""
    wanted = {t.removeprefix("eval/"): t for t in tags if t.startswith("eval/")}
    if not wanted or not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, Series] = {}
    for column, tag in wanted.items():
        points = {}
        for row in rows:
            try:
                step, value = int(float(row["step"])), float(row.get(column) or "nan")
            except (KeyError, ValueError):  # a row that is not an evaluation's: skipped, as a bad event record
                continue
            if math.isfinite(value):
                points[step] = value  # one value per step: a resumed run's repeat of a step keeps the last
        if points:
            steps = np.array(sorted(points), dtype=np.int64)
            out[tag] = Series(steps, np.array([points[s] for s in steps], dtype=np.float64),
                              np.full(len(steps), np.nan))
    return out


# --- loading ------------------------------------------------------------------------------------------------
def load_run(path: Path) -> RunDir:
    """A run directory (with or without ``.hydra``), or a single event file."""
    path = Path(path)
    if path.is_file():
        return _load_event_file(path)
    # RUN/events.* and RUN/tb/events.* (early versions of av-td3: a resumed old run has both).
    files = sorted(event_files(path) + event_files(path / TB), key=lambda p: p.name)  # by creation time
    run = RunDir(path=path, event_files=files, kept=_is_kept(path))
    config, overrides = (KEPT_CONFIG, KEPT_OVERRIDES) if run.kept else (CONFIG, OVERRIDES)
    if (path / config).is_file():
        run.config, run.config_path = _load_yaml(path / config, resolve=True), path / config
    if (path / overrides).is_file() and (run.kept or run.config_path is not None):
        run.overrides = [str(o) for o in _load_yaml(path / overrides, resolve=False) or []]
    _load_outcome(run)
    return run


def _load_event_file(path: Path) -> RunDir:
    # RUN/events... or RUN/tb/events...: the config of the run it belongs to still applies (only this
    # file is read).
    run_dir = path.parent if (path.parent / CONFIG).is_file() else (
        path.parent.parent if path.parent.name == TB else None)
    if run_dir is not None and (run_dir / CONFIG).is_file():
        run = load_run(run_dir)
        run.path, run.event_files = path, [path]
        return run
    return RunDir(path=path, event_files=[path])


def _load_yaml(path: Path, resolve: bool) -> Any:
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - any parse error makes the run unusable, said plainly
        raise RunDirError(path, f"unreadable YAML ({type(e).__name__}: {e})") from None
    try:
        return OmegaConf.to_container(cfg, resolve=resolve)
    except Exception:  # noqa: BLE001 - e.g. a custom resolver not registered here: keep the raw text
        return OmegaConf.to_container(cfg, resolve=False)


def _load_outcome(run: RunDir) -> None:
    """results.json, DONE and error.txt -> status. A resumed run can hold an older segment's file beside
    a newer one, so when both results.json and error.txt exist the newer decides."""
    path = run.path
    results, error = path / RESULTS, path / ERROR
    run.done = (path / DONE).exists()
    if results.is_file():
        try:
            run.results = json.loads(results.read_text())
        except (OSError, ValueError) as e:
            raise RunDirError(results, f"unreadable results ({e})") from None
        if not isinstance(run.results, dict):
            raise RunDirError(results, f"results is a JSON {type(run.results).__name__}, not an object")
    if error.is_file():
        lines = error.read_text(errors="replace").strip().splitlines()
        run.error_line = lines[0] if lines else "(empty error.txt)"
    error_newer = error.is_file() and (not results.is_file()
                                       or error.stat().st_mtime > results.stat().st_mtime)
    if run.results is not None and not error_newer:
        run.status = str(run.results.get("status", "unfinished"))
        if run.status == "finished" and not run.done and not run.kept:
            run.status = "unfinished"  # results written, but the process died before the DONE marker
    elif run.error_line is not None:
        run.status = "failed"
    elif run.config_path is not None:
        run.status = "unfinished"  # still running, or killed without a trace
    if run.status == "failed" and run.error_line is None and run.results:
        run.error_line = run.results.get("error")


def discover_runs(paths: Iterable[Path]) -> list[RunDir]:
    """Every run at or below ``paths``: an event file, a run directory, or any directory holding runs
    (a multirun) at any depth. FileNotFoundError for a missing path; an empty list when nothing is found.
    A run that cannot be loaded (corrupt config or results.json) is kept as status ``unreadable`` with
    the reason in ``error_line``, so one broken run never hides the others."""
    runs: list[RunDir] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
        for run_path in find_run_paths(path):
            key = run_path.resolve()
            if key not in seen:
                seen.add(key)
                try:
                    runs.append(load_run(run_path))
                except RunDirError as e:
                    runs.append(RunDir(path=run_path, event_files=[], status="unreadable",
                                       error_line=f"{e.path.name}: {e.reason}"))
    return runs


def find_run_paths(path: Path) -> list[Path]:
    """The run paths at or below ``path`` (see ``discover_runs``), in sorted order."""
    if path.is_file() or _is_run(path):
        return [path]
    runs = []
    for root, dirs, _ in os.walk(path):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # not .hydra, .submitit
        if _is_run(here):
            runs.append(here)
            dirs[:] = []  # a run's own subfolders are not runs
    return sorted(runs)


def _is_run(path: Path) -> bool:
    return ((path / CONFIG).is_file() or _is_kept(path) or bool(event_files(path / TB))
            or bool(event_files(path)))


def _is_kept(path: Path) -> bool:
    """A kept run: results.json and overrides.yaml side by side, no Hydra folder."""
    return (path / RESULTS).is_file() and (path / KEPT_OVERRIDES).is_file() and not (path / CONFIG).is_file()


@dataclass
class RunRow:
    run: RunDir
    group: str  # the overrides without the seed and those all runs share, "a=1,b=2" ("(defaults)": none)
    seed: int | None
    status: str
    values: dict[str, float] = field(default_factory=dict)
    problem: str | None = None  # why the run is listed below the table (besides not having finished)
    source: str | None = None  # where the score came from: results.json or an event tag

    @property
    def scored(self) -> bool:
        """Counts in the statistics: a finished run of ours, or another code's run scored from events."""
        return self.status in ("finished", "foreign")
