"""Validating one run: load it, read its scalars once, run every check, reduce them to a verdict."""

from __future__ import annotations

from pathlib import Path

from av_td3 import tags
from av_td3.analysis.events import EventFileError
from av_td3.analysis.runs import RunDir, RunDirError, load_run
from av_td3.analysis.validate.checks import (LEVEL, Options, RunReport, _describe_clipping, check_after_le_before,
                                             check_alerts, check_bounded, check_cadence, check_clip_ratio,
                                             check_dead, check_finished, check_finite, check_frozen,
                                             check_gradients, check_limits, check_parts)

KEPT_NOTE = ("a kept run (av-td3 keep): its event files stayed with the run it was kept from, so there are no "
             "gradient logs to check here; validate that run")


def _learns(run: RunDir) -> bool:
    # Learning agents have a policy delay; the classical controller has no config for it and no updates.
    return not run.has_config or run.setting("agent.policy_delay") is not None


def validate_run(run: RunDir, opts: Options) -> RunReport:
    report = RunReport(str(run.path), "PASS")
    if run.status == "unreadable":
        return RunReport(str(run.path), "ERROR", error=f"{run.path}: {run.error_line}")
    if run.kept and not run.event_files:  # av-td3 keep leaves the event files behind: nothing to check
        return RunReport(str(run.path), "SKIP", notes=[KEPT_NOTE])
    try:
        if not run.event_files:
            where = run.path
            raise RunDirError(run.path, f"no event files (events.out.tfevents.*) in {where}"
                              + (f"; the run failed: {run.error_line}" if run.error_line else ""))
        cfgs = {net: run.clipping(net) for net in tags.NETWORKS}
        given = opts.limits or {}
        for net in tags.NETWORKS:
            if net in given and (cfgs[net] is None or opts.override_limits):
                cfgs[net] = given[net]
        data = run.read_all()
    except (EventFileError, RunDirError) as e:
        return RunReport(str(run.path), "ERROR", error=str(e))
    points = sum(len(s.steps) for s in data.values())
    report.notes.append(f"{len(run.event_files)} event file(s), {len(data)} tags, {points} points")
    source = "the command line" if given and (not run.has_config or opts.override_limits) else "the run config"
    if run.has_config or given:
        report.notes.append(f"clipping (from {source}): "
                            + ", ".join(f"{n}={_describe_clipping(c)}" for n, c in cfgs.items()))
    else:
        report.notes.append("no .hydra/config.yaml: clipping limits unknown, health checks only (give them "
                            "with --limit or --clipping)")
    learns = _learns(run)
    checks = report.checks
    for net in tags.NETWORKS:
        checks.append(check_gradients(net, data, run, learns))
    cadence = check_cadence(data, run)
    if cadence:
        checks.append(cadence)
    for net in tags.NETWORKS:
        checks += check_limits(net, cfgs[net], data, opts.tolerance)
        checks.append(check_after_le_before(net, data, opts.tolerance))
        checks.append(check_parts(net, cfgs[net], data, opts.tolerance))
        checks.append(check_clip_ratio(net, cfgs[net], data, opts.tolerance))
    checks.append(check_alerts(data, run))
    checks.append(check_finite(data))
    checks.append(check_bounded("actor_loss", [tags.ACTOR_LOSS], data, opts.loss_warn, opts.loss_fail,
                                learns))
    checks.append(check_bounded("q", [tags.Q1, tags.Q2], data, opts.q_warn, opts.q_fail, learns))
    if learns:
        for net in tags.NETWORKS:
            checks.append(check_frozen(net, data, opts))
            checks += check_dead(net, data, run, opts)
    checks.append(check_finished(run, data))
    worst = max((LEVEL[c.status] for c in checks), default=0)
    report.verdict = ("PASS", "WARN", "FAIL")[worst]
    return report


def validate_path(path: Path, opts: Options) -> RunReport:
    """Load and validate one run path (picklable entry point for worker processes)."""
    try:
        run = load_run(path)
    except (RunDirError, OSError) as e:
        return RunReport(str(path), "ERROR", error=str(e))
    return validate_run(run, opts)


