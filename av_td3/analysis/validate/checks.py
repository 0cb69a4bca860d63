"""The checks of ``av-td3 validate``: each one reads a run's scalars (and its clipping config) and returns
a ``Check`` (PASS / WARN / FAIL / SKIP with its figures). What each checks is listed in the package's
docstring (``av_td3/analysis/validate/__init__.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from av_td3 import tags
from av_td3.analysis.events import Series
from av_td3.analysis.runs import RunDir
from av_td3.analysis.stats import limit_value, percent

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
LEVEL = {SKIP: 0, PASS: 0, WARN: 1, FAIL: 2}
# torch's clip coefficient is max_norm / (norm + 1e-6) (gradients.py uses the same)
CLIP_EPS = 1e-6
# The reference validator's actor-loss thresholds; Q bounds: with SPEC's rewards (|r| of order 10 per
# step, one-off terms of 100) and gamma 0.99, |Q| stays near 1e3; 1e4 is suspicious, 1e5 is divergence.
DEFAULTS = {"loss_warn": 1e6, "loss_fail": 1e9, "q_warn": 1e4, "q_fail": 1e5, "tolerance": 1e-4,
            # Adam moves each weight by ~lr per step: at lr 3e-4 the ratio is ~1e-3 (CS231n's rule of
            # thumb for a healthy step); 1e-5 is a network that barely moves.
            "frozen_below": 1e-5, "dead_below": 1e-12}


@dataclass
class Options:
    tolerance: float = DEFAULTS["tolerance"]
    loss_warn: float = DEFAULTS["loss_warn"]
    loss_fail: float = DEFAULTS["loss_fail"]
    q_warn: float = DEFAULTS["q_warn"]
    q_fail: float = DEFAULTS["q_fail"]
    frozen_below: float = DEFAULTS["frozen_below"]
    dead_below: float = DEFAULTS["dead_below"]
    strict: bool = False  # frozen / dead FAIL instead of WARN
    limits: dict | None = None  # net -> NetClipConfig from --limit / --clipping, for runs without a config
    override_limits: bool = False  # those limits win over a run's own config


@dataclass
class Check:
    name: str
    status: str
    message: str
    figures: dict = field(default_factory=dict)  # count, mean, max, limit, first_step, tag, ...


@dataclass
class RunReport:
    path: str
    verdict: str  # PASS | WARN | FAIL | ERROR, or SKIP: nothing to validate (a kept run)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


# --- helpers --------------------------------------------------------------------------------------------
def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _stats(series: Series) -> dict:
    v = series.values[np.isfinite(series.values)]
    return {"count": int(len(series.values)), "mean": float(v.mean()) if len(v) else None,
            "max": float(v.max()) if len(v) else None}


def _first_bad(series_steps: np.ndarray, bad: np.ndarray) -> dict:
    idx = np.flatnonzero(bad)
    return {"n_bad": int(len(idx)), "first_step": int(series_steps[idx[0]]) if len(idx) else None}


def _align(*series: Series) -> tuple[np.ndarray, list[np.ndarray]]:
    """The steps every series has, and each series' values at them."""
    steps = series[0].steps
    for other in series[1:]:
        steps = np.intersect1d(steps, other.steps, assume_unique=True)
    return steps, [s.values[np.searchsorted(s.steps, steps)] for s in series]


def loss_tag(net: str) -> str:
    return tags.ACTOR_LOSS if net == "actor" else tags.CRITIC_LOSS


def _where(net: str, part: str | None) -> str:
    return f"{net} {part}" if part else net


def _describe_clipping(cfg) -> str:
    if cfg is None:
        return "unknown"
    if cfg.mode == "value":
        return f"value(clip_value={cfg.clip_value:g})"
    if cfg.mode == "norm":
        limits = [f"{k}={getattr(cfg, k):g}" for k in ("max_norm", "cnn_max_norm", "mlp_max_norm")
                  if getattr(cfg, k) is not None]
        norm = "" if cfg.norm_type == 2 else f", norm_type={cfg.norm_type:g}"
        return f"norm({', '.join(limits)}{norm})"
    return "none"


# What a missing gradient tag prevents (validate exists to check these).
def _missing_consequence(net: str, tag: str) -> str:
    for part in (None, *tags.PARTS):
        where = _where(net, part)
        if tag == tags.grad_norm(net, "AFTER", part):
            return f"cannot check the clipping of the {where}"
        if tag == tags.grad_norm(net, "BEFORE", part):
            return f"cannot check AFTER <= BEFORE of the {where}" + ("" if part else " or the clip ratio")
    if tag == tags.clip_ratio(net):
        return "cannot check the clip ratio"
    return "clipped fraction unknown"


# --- checks -----------------------------------------------------------------------------------------------
def check_gradients(net: str, data: dict[str, Series], run: RunDir, learns: bool) -> Check:
    name = f"gradients/{net}"
    expected = tags.all_grad_tags(net)
    missing = [t for t in expected if t not in data]
    whole = data.get(tags.grad_norm(net, "BEFORE"))
    if whole is None:
        whole = data.get(tags.grad_norm(net, "AFTER"))
    if len(missing) == len(expected):
        if not learns:
            return Check(name, SKIP, "the agent has no gradient updates")
        critic = data.get(tags.grad_norm("critic", "BEFORE"))
        msg = f"no {net} gradient tags (expected {tags.grad_norm(net, 'AFTER')} and {len(expected) - 1} more)"
        if net == "actor" and critic is not None:
            other_n = len(critic.steps)
            return Check(name, FAIL, f"{msg} while the critic has {other_n} logged updates: the actor's "
                                     "updates were never logged, its clipping cannot be checked")
        if run.status == "finished":
            return Check(name, FAIL, f"{msg} in a finished run: no update was logged")
        loss = data.get(loss_tag(net))
        if run.foreign:  # other code's run: say what it logged, not what our trainer would have
            logged = (f"it logged {len(loss.steps)} {loss_tag(net)} points, up to step {int(loss.steps.max())}"
                      if loss is not None and len(loss.steps) else "it logged no loss either")
            return Check(name, WARN, f"{msg}: {logged}, but no gradient norms under these names")
        return Check(name, WARN, f"{msg}: no update logged yet (status {run.status}, step "
                                 f"{run.last_step if run.last_step is not None else '?'}, learning_starts "
                                 f"{run.setting('trainer.learning_starts', '?')})")
    fig = {"tag": tags.grad_norm(net, "BEFORE"), **(_stats(whole) if whole is not None else {}),
           "missing": missing}
    if whole is not None and len(whole.values) and np.all(whole.values == 0):
        return Check(name, FAIL, f"{net} gradient norm is zero at all {len(whole.values)} logged updates: "
                                 f"the {net} does not learn", fig)
    if missing:
        said = "; ".join(f"no {t}: {_missing_consequence(net, t)}" for t in missing)
        return Check(name, WARN, said, fig)
    return Check(name, PASS, f"{fig['count']} logged updates, BEFORE mean {_fmt(fig['mean'])} "
                             f"max {_fmt(fig['max'])}", fig)


def check_cadence(data: dict[str, Series], run: RunDir) -> Check | None:
    actor, critic = (data.get(tags.grad_norm(n, "BEFORE")) for n in ("actor", "critic"))
    if actor is None or critic is None:
        return None  # reported by the gradients checks
    na, nc = len(actor.steps), len(critic.steps)
    fig = {"actor_count": na, "critic_count": nc, "policy_delay": run.setting("agent.policy_delay")}
    if na > nc:
        return Check("cadence/actor", FAIL, f"actor logged on {na} updates, more than the critic's {nc}: "
                                            "actor values are not tied to actor-update steps", fig)
    return Check("cadence/actor", PASS, f"actor logged on {na} updates, critic on {nc} "
                                        f"(policy_delay {fig['policy_delay'] or '?'})", fig)


def check_limits(net: str, cfg, data: dict[str, Series], tol: float) -> list[Check]:
    if cfg is None:
        return [Check(f"limit/{net}", SKIP, "no run config (.hydra/config.yaml): limits unknown, health checks "
                                            f"only; give them with --limit {net}=MAX_NORM (and {net}.cnn=, "
                                            f"{net}.mlp=) or --clipping FILE.yaml")]
    if cfg.mode == "none":
        return [Check(f"limit/{net}", SKIP, f"clipping.{net}.mode=none: no limit to check")]
    if cfg.mode == "value":
        return [Check(f"limit/{net}", SKIP, f"clipping.{net}.mode=value clamps elements to "
                                            f"+-{cfg.clip_value:g}: the norm has no configured bound")]
    out = []
    for part in (None, *tags.PARTS):
        name = f"limit/{net}" + (f"/{part}" if part else "")
        tag, limit = tags.grad_norm(net, "AFTER", part), cfg.limit(part)
        if limit is None:
            out.append(Check(name, SKIP, f"no limit on the {_where(net, part)}"))
            continue
        series = data.get(tag)
        if series is None:
            out.append(Check(name, SKIP, f"no {tag} (see gradients/{net})", {"tag": tag, "limit": limit}))
            continue
        bad = series.values > limit * (1 + tol)
        fig = {"tag": tag, **_stats(series), "limit": limit, **_first_bad(series.steps, bad)}
        if fig["n_bad"]:
            out.append(Check(name, FAIL, f"{fig['n_bad']}/{fig['count']} values above the limit {limit:g}, "
                                         f"max {limit_value(fig['max'], limit)}, first at step "
                                         f"{fig['first_step']} ({tag})",
                             fig))
        else:
            relation = (f"<= {limit:g}" if fig["max"] <= limit
                        else f"above {limit:g} by less than the tolerance ({tol:g}, --tolerance)")
            out.append(Check(name, PASS, f"max {limit_value(fig['max'], limit)} {relation} over "
                                         f"{fig['count']} updates", fig))
    return out


def check_after_le_before(net: str, data: dict[str, Series], tol: float) -> Check:
    name, worst, compared = f"after<=before/{net}", None, 0
    for part in (None, *tags.PARTS):
        before, after = (data.get(tags.grad_norm(net, w, part)) for w in ("BEFORE", "AFTER"))
        if before is None or after is None:
            continue
        steps, (b, a) = _align(before, after)
        compared += len(steps)
        bad = a > b * (1 + tol)
        if bad.any() and worst is None:
            i = int(np.argmax(bad))
            worst = {"tag": tags.grad_norm(net, "AFTER", part), "n_bad": int(bad.sum()),
                     "first_step": int(steps[i]), "after": float(a[i]), "before": float(b[i])}
    if not compared:
        return Check(name, SKIP, "no BEFORE/AFTER pair logged at the same steps")
    if worst:
        return Check(name, FAIL, f"AFTER > BEFORE at {worst['n_bad']} updates, first at step "
                                 f"{worst['first_step']} ({worst['after']:.4g} > {worst['before']:.4g}, "
                                 f"{worst['tag']}): clipping increased a norm", worst)
    return Check(name, PASS, f"AFTER <= BEFORE at all {compared} compared points", {"count": compared})


def check_parts(net: str, cfg, data: dict[str, Series], tol: float) -> Check:
    """The seed report's bug signature, from the logs alone: part norms that do not combine to the whole.
    Under L2, ||g||^2 = ||g_cnn||^2 + ||g_mlp||^2 exactly, so sqrt(cnn^2 + mlp^2) / whole must be 1."""
    name = f"parts/{net}"
    norm_type = cfg.norm_type if cfg is not None else 2.0
    if norm_type != 2:
        return Check(name, SKIP, f"norm_type {norm_type:g}: the parts combine as an L{norm_type:g} norm")
    worst, compared = None, 0
    for when in ("BEFORE", "AFTER"):
        series = [data.get(tags.grad_norm(net, when, part)) for part in (None, *tags.PARTS)]
        if any(x is None for x in series):
            continue
        steps, (whole, cnn, mlp) = _align(*series)
        ok = whole > 0
        if not ok.any():
            continue
        factor = np.hypot(cnn[ok], mlp[ok]) / whole[ok]
        compared += int(ok.sum())
        bad = np.abs(factor - 1) > max(tol, 1e-4)
        if bad.any():
            i = int(np.argmax(np.abs(factor - 1)))
            limit = cfg.limit() if cfg is not None else None
            entry = {"when": when, "n_bad": int(bad.sum()), "count": int(ok.sum()), "factor": float(factor[i]),
                     "step": int(steps[ok][i]), "whole": float(whole[ok][i]), "limit": limit,
                     "part_max_over_whole": float(np.max(np.maximum(cnn[ok], mlp[ok]) / whole[ok]))}
            if worst is None or abs(entry["factor"] - 1) > abs(worst["factor"] - 1):
                worst = entry
    if not compared:
        return Check(name, SKIP, "needs the whole and both part norms at the same steps")
    if worst:
        msg = (f"sqrt(cnn^2 + mlp^2) is {worst['factor']:.4g}x the whole {net} {worst['when']} norm (step "
               f"{worst['step']}; {worst['n_bad']}/{worst['count']} updates): the parts were measured "
               "differently from the whole, a measurement error")
        if worst["when"] == "AFTER" and worst["limit"] is not None and worst["whole"] <= worst["limit"] * (1 + tol):
            msg += (f"; the whole is within its limit {worst['limit']:g}, so parts above it are not a clipping "
                    "failure")
        return Check(name, FAIL, msg, worst)
    return Check(name, PASS, f"parts combine to the whole (L2) at all {compared} compared points",
                 {"count": compared})


def check_clip_ratio(net: str, cfg, data: dict[str, Series], tol: float) -> Check:
    name = f"clip_ratio/{net}"
    ratio, before, after = (data.get(t) for t in (tags.clip_ratio(net), tags.grad_norm(net, "BEFORE"),
                                                  tags.grad_norm(net, "AFTER")))
    if ratio is None or before is None or after is None:
        return Check(name, SKIP, f"needs the ratio, BEFORE and AFTER tags (see gradients/{net})")
    steps, (r, b, a) = _align(ratio, before, after)
    if not len(steps):
        return Check(name, SKIP, "the ratio, BEFORE and AFTER were never logged at the same steps")
    # Always: the logged ratio is AFTER / BEFORE (1 where BEFORE is 0) and never above 1.
    measured = np.where(b > 0, a / np.where(b > 0, b, 1), 1.0)
    bad = (np.abs(r - measured) > tol * np.maximum(1, np.abs(measured))) | (r > 1 + tol)
    rule = "AFTER / BEFORE"
    # Where the configuration fixes it: 1 without clipping, torch's coefficient under whole-network
    # norm clipping (per-part limits make it depend on the parts: the general rule above only).
    if cfg is not None and cfg.mode == "none":
        bad |= np.abs(r - 1) > tol
        rule = "1 (no clipping)"
    elif cfg is not None and cfg.mode == "norm" and cfg.max_norm is not None and (
            cfg.cnn_max_norm is None and cfg.mlp_max_norm is None):
        expected = np.minimum(1.0, cfg.max_norm / (b + CLIP_EPS))
        bad |= np.abs(r - expected) > tol
        rule = f"min(1, {cfg.max_norm:g} / BEFORE)"
    clipped = data.get(tags.clipped(net))
    frac = (float(np.mean(clipped.values > 0.5)) if clipped is not None and len(clipped.values)
            else float(np.mean(r < 1 - tol)))
    fig = {"tag": tags.clip_ratio(net), "count": int(len(steps)), "mean": float(np.nanmean(r)),
           "clipped_fraction": frac, **_first_bad(steps, bad)}
    if fig["n_bad"]:
        i = int(np.argmax(bad))
        return Check(name, FAIL, f"ratio inconsistent with {rule} at {fig['n_bad']} of {len(steps)} updates, "
                                 f"first at step {fig['first_step']} (ratio {r[i]:.6g}, BEFORE {b[i]:.6g}, "
                                 f"AFTER {a[i]:.6g})", fig)
    return Check(name, PASS, f"consistent with {rule}; clipped on {percent(frac)} of {len(steps)} "
                             f"updates, mean ratio {fig['mean']:.4g}", fig)


def _alert_prefixes() -> tuple[str, ...]:
    stems = [*tags.ALERT_STEMS.values(), tags.NONFINITE_ALERT]
    return tuple(sorted({s.split("/")[0] + "/" for s in stems}))


def check_alerts(data: dict[str, Series], run: RunDir) -> Check:
    """Alert tags and the skipped-update counters are written only when they fire (the value is the
    offending norm or the count), so any non-zero event is a fired alert; results.json's counts catch
    those a crash kept from the event file."""
    fired, zero_only = [], []
    watched = [t for t in data if t.startswith(_alert_prefixes())]
    watched += [t for t in map(tags.nonfinite_skips, tags.NETWORKS) if t in data]
    for tag in watched:
        s = data[tag]
        hit = s.values != 0
        if hit.any():
            v = s.values[hit]
            fired.append({"tag": tag, "count": int(hit.sum()), "first_step": int(s.steps[hit][0]),
                          "max": float(np.nanmax(v)) if np.isfinite(v).any() else float(v[0])})
        else:
            zero_only.append(tag)
    logged = {f["tag"] for f in fired}
    results = run.results or {}
    for tag, count in (results.get("alerts") or {}).items():
        if count and tag not in logged:
            fired.append({"tag": tag, "count": int(count), "first_step": None, "max": None,
                          "source": "results.json"})
    for net, n in (results.get("nonfinite_skips") or {}).items():
        if n and tags.nonfinite_skips(net) not in logged:
            fired.append({"tag": tags.nonfinite_skips(net), "count": int(n), "first_step": None, "max": None,
                          "source": "results.json"})
    if fired:
        parts = [f"{f['tag']} x{f['count']}" + (f" first at step {f['first_step']}, max {_fmt(f['max'])}"
                                                 if f["first_step"] is not None else " (results.json)")
                 for f in fired]
        return Check("alerts", FAIL, "fired: " + "; ".join(parts), {"fired": fired})
    if zero_only:
        return Check("alerts", WARN, f"{', '.join(zero_only)} written with value 0 only (as the reference "
                                     "wrote alerts on every step): not counted as fired",
                     {"zero_only": zero_only})
    return Check("alerts", PASS, "no alert fired")


def check_finite(data: dict[str, Series]) -> Check:
    bad = []
    total = 0
    for tag, s in data.items():
        total += len(s.values)
        nonfinite = ~np.isfinite(s.values)
        if nonfinite.any():
            i = int(np.argmax(nonfinite))
            bad.append({"tag": tag, "count": int(nonfinite.sum()), "first_step": int(s.steps[i]),
                        "value": str(s.values[i])})
    if bad:
        shown = "; ".join(f"{b['tag']} {b['value']} first at step {b['first_step']} (x{b['count']})"
                          for b in bad[:3])
        more = f"; and {len(bad) - 3} more tags" if len(bad) > 3 else ""
        return Check("finite", FAIL, f"non-finite values: {shown}{more}", {"tags": bad})
    return Check("finite", PASS, f"all {total} values of {len(data)} tags finite", {"count": total})


def check_bounded(name: str, tag_list: list[str], data: dict[str, Series], warn: float, fail: float,
                  learns: bool) -> Check:
    present = [t for t in tag_list if t in data]
    if not present:
        if not learns or not any(tags.grad_norm(n, "BEFORE") in data for n in tags.NETWORKS):
            return Check(name, SKIP, f"no {tag_list[0]} (no update logged)")
        return Check(name, WARN, f"no {tag_list[0]}: cannot check that it stays bounded")
    worst = None
    for tag in present:
        s = data[tag]
        mag = np.where(np.isfinite(s.values), np.abs(s.values), 0)
        if len(mag) and (worst is None or mag.max() > worst["max_abs"]):
            over = mag > warn
            worst = {"tag": tag, "count": int(len(mag)), "max_abs": float(mag.max()),
                     "warn": warn, "fail": fail, "step_of_max": int(s.steps[int(np.argmax(mag))]),
                     **_first_bad(s.steps, over)}
    if worst is None:
        return Check(name, SKIP, f"{', '.join(present)} logged without values")
    text = f"max |{worst['tag']}| {worst['max_abs']:.4g} at step {worst['step_of_max']}"
    if worst["max_abs"] > fail:
        return Check(name, FAIL, f"{text} > {fail:g}", worst)
    if worst["max_abs"] > warn:
        return Check(name, WARN, f"{text} > {warn:g} (first above at step {worst['first_step']})", worst)
    return Check(name, PASS, f"{text} <= {warn:g}", worst)


def check_frozen(net: str, data: dict[str, Series], opts: Options) -> Check:
    """The median relative update over the run's last half of logged steps."""
    name, tag = f"frozen/{net}", tags.update_ratio(net)
    series = data.get(tag)
    if series is None or not len(series.values):
        return Check(name, SKIP, f"no {tag} (runs before update-size logging, or no update logged)")
    half = series.steps >= series.steps[0] + (series.steps[-1] - series.steps[0]) / 2
    median = float(np.median(series.values[half]))
    fig = {"tag": tag, "median_last_half": median, "threshold": opts.frozen_below,
           "count": int(half.sum()), "from_step": int(series.steps[half][0])}
    if median < opts.frozen_below:
        return Check(name, FAIL if opts.strict else WARN,
                     f"median update ratio {median:.3g} < {opts.frozen_below:g} over the last half "
                     f"({fig['count']} updates from step {fig['from_step']}): the {net} is effectively frozen",
                     fig)
    return Check(name, PASS, f"median update ratio {median:.3g} over the last half (>= {opts.frozen_below:g})",
                 fig)


def check_dead(net: str, data: dict[str, Series], run: RunDir, opts: Options) -> list[Check]:
    """A part whose gradient is zero at every logged update receives no learning signal."""
    out = []
    for part in tags.PARTS:
        name, tag = f"dead/{net}/{part}", tags.grad_norm(net, "BEFORE", part)
        counts = ((run.results or {}).get("parameters") or {}).get(net) or {}
        if counts.get(part) == 0:  # no image (env=gym), or the shared encoder's actor
            out.append(Check(name, SKIP, f"the {_where(net, part)} has no parameters (results.json)"))
            continue
        series = data.get(tag)
        if series is None or not len(series.values):
            out.append(Check(name, SKIP, f"no {tag}"))
            continue
        peak = float(np.nanmax(np.abs(series.values)))
        fig = {"tag": tag, "count": int(len(series.values)), "max": peak, "threshold": opts.dead_below}
        if peak <= opts.dead_below:
            out.append(Check(name, FAIL if opts.strict else WARN,
                             f"{tag} <= {opts.dead_below:g} at all {fig['count']} logged updates (max "
                             f"{peak:.3g}): the {_where(net, part)} receives no gradient", fig))
        else:
            out.append(Check(name, PASS, f"gradient max {peak:.4g} over {fig['count']} updates", fig))
    return out


def check_finished(run: RunDir, data: dict[str, Series]) -> Check:
    if run.foreign:
        last = max((int(s.steps.max()) for s in data.values() if len(s.steps)), default=None)
        return Check("finished", SKIP, "events only (no .hydra, no results.json): completion unknown; last "
                                       f"logged step {last if last is not None else '-'}", {"step": last})
    total = run.total_steps
    last = run.last_step
    if last is None:
        last = max((int(s.steps.max()) for s in data.values() if len(s.steps)), default=None)
    fig = {"status": run.status, "step": last, "total_steps": total, "done_marker": run.done}
    progress = f"step {last if last is not None else '?'}/{total if total is not None else '?'}"
    if run.status == "finished":
        return Check("finished", PASS, f"finished at {progress}", fig)
    if run.done and run.results is None:
        return Check("finished", WARN, f"DONE marker but no results.json (removed or never written): the "
                                       f"events reach {progress}", fig)
    why = f": {run.error_line}" if run.error_line else ""
    return Check("finished", WARN, f"{run.status} at {progress}{why}", fig)


