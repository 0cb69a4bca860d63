"""``av-td3 compare DIR...``: every run under the given multirun (or run) directories in one tidy table,
grouped by their overrides without the seed (or by directory name: ``--group-by-name REGEX``),
summarised with interval estimates.

Writes into ``--out`` (default: ``compare/`` beside the first DIR, never into an input): ``runs.csv`` (one
row per run, with where its score came from), ``groups.csv`` and ``groups.tex`` (one row per group),
``curves.png/.pdf`` (evaluation return and success with 95% bootstrap bands), ``grad_norms.png/.pdf``
(BEFORE/AFTER norms per network with the clip limits drawn) and ``update_ratio.png/.pdf``; prints the
grouped table as markdown. Failed and unfinished runs are listed, never silently dropped; their scores
are left out of the statistics (only finished runs have a final evaluation).

Runs that other TD3 code wrote (event files only, status ``foreign``) are scored from their scalars:
``final/<key>`` falls back to the last ``eval/<key>`` point, and ``final/mean_reward`` then to the mean of
the last ``TRAIN_TAIL`` ``train/episode_reward`` points. Kept runs (``av-td3 keep``: results.json and the
config, no event files) count as the runs they were, with their evaluation curves from eval.csv. Exit
status: 0, or 2 when no run has the metric.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from pathlib import Path

import numpy as np

from av_td3 import tags
from av_td3.analysis import figures as figures_module
from av_td3.analysis import stats
from av_td3.analysis.events import EventFileError
from av_td3.analysis.runs import RunDir, RunRow, discover_runs, read_scalars
from av_td3.analysis.stats import percent
from av_td3.helptext import plain, report_missing

FINAL = "final_eval"
FINAL_BY_SPLIT = "final_eval_by_split"  # trainer.final_eval_splits: final_<split>/<key> (final_train/success_rate)
# Overrides that never tell groups apart: seeds are what a group aggregates, torch_threads is the
# machine's, the rest name the sweep.
SKIPPED_OVERRIDES = ("seed=", "hydra.", "+experiment=", "experiment=", "trainer.progress_bar=", "torch_threads=")
# Composed settings that do not make two runs different experiments. Everything else does: runs whose
# overrides read alike but whose composed configs differ (+experiment=smoke beside a full-size run) are
# split, and the group's name says by what.
NON_GROUPING_KEYS = ("seed", "trainer.progress_bar", "torch_threads")
MAX_NAMED_KEYS = 3  # differing settings spelled out in a group's name
# Every tag compare reads (table and figures), fetched in one pass over each run's event files.
COMPARE_TAGS = [tags.EVAL_MEAN_REWARD] + [t for n in tags.NETWORKS for t in
                                          (tags.clipped(n), tags.grad_norm(n, "BEFORE"), tags.grad_norm(n, "AFTER"))]
TRAIN_TAIL = 10  # training episodes a foreign run's return is averaged over, when it logged no evaluation
RESULTS_SOURCE = "results.json"


def collect(dirs: list[Path], metric: str = "final/mean_reward", group_by_name: str | None = None) -> list[RunRow]:
    rows = []
    pattern = _name_pattern(group_by_name)
    for run in discover_runs(dirs):
        if run.status == "unreadable":
            rows.append(RunRow(run, "", None, run.status, problem=run.error_line))
            continue
        results = run.results or {}
        row = RunRow(run, "", run.seed, run.status)
        finals = {"final": results.get(FINAL) or {}}
        for split, figures in (results.get(FINAL_BY_SPLIT) or {}).items():
            finals[f"final_{split}"] = figures.get("overall") or {}
        for prefix, final in finals.items():
            row.values.update({f"{prefix}/{k}": math.nan if v is None else float(v) for k, v in final.items()})
        best = results.get("best_eval") or {}
        if "mean_reward" in best:
            row.values["best/mean_reward"] = float(best["mean_reward"])
        row.values["wall_time_s"] = float(results.get("wall_time_s", math.nan))
        row.values["steps"] = float(results.get("step", math.nan))
        try:
            scalars = read_scalars(run, COMPARE_TAGS)  # one pass over the files; the plots hit the cache
        except EventFileError as e:  # the run stays in the table (its results.json score counts)
            scalars, row.problem = {}, f"unreadable event file: {e}"
            run.event_files = []  # the plots skip it too
        for net in tags.NETWORKS:
            clipped = scalars.get(tags.clipped(net))
            before = scalars.get(tags.grad_norm(net, "BEFORE"))
            row.values[f"{net}_clipped_fraction"] = float(np.mean(clipped[1])) if clipped else math.nan
            row.values[f"{net}_max_before_norm"] = float(np.max(before[1])) if before else math.nan
        _score(row, metric)
        rows.append(row)
    if pattern is None:
        _drop_shared_overrides(rows)
        _split_by_composed_config(rows)
    else:
        for r in rows:
            r.group = _name_group(r.run.path, pattern)
    return rows


def _score(row: RunRow, metric: str) -> None:
    """Where the row's ``metric`` comes from: results.json when the run has one, else (foreign runs) the
    event scalars that stand for it."""
    value = row.values.get(metric, math.nan)
    if not math.isnan(value):
        row.source = RESULTS_SOURCE
        return
    if row.run.results is not None or not row.run.event_files:
        return
    for tag, how in score_tags(metric):
        try:
            series = read_scalars(row.run, [tag]).get(tag)
        except EventFileError:
            return
        if series is not None and len(series.values):
            tail = series.values[-TRAIN_TAIL:] if how == "tail" else series.values[-1:]
            row.values[metric] = float(np.mean(tail))
            row.source = f"{tag} (last)" if how == "last" else f"{tag} (mean of last {len(tail)})"
            return


def score_tags(metric: str) -> list[tuple[str, str]]:
    """(tag, "last" | "tail") event scalars that stand in for a results.json ``metric``, in order."""
    kind, _, key = metric.partition("/")
    if kind not in ("final", "best") or not key:
        return []
    out = [(f"eval/{key}", "last")]
    if key == "mean_reward":
        out.append((tags.EPISODE_REWARD, "tail"))
    return out


def _name_pattern(regex: str | None) -> re.Pattern | None:
    if regex is None:
        return None
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise ValueError(f"--group-by-name {regex!r} is not a regular expression: {e}") from None
    if pattern.groups < 1:
        raise ValueError(f"--group-by-name {regex!r} needs a capturing group: its first group names the group")
    return pattern


def _name_group(path: Path, pattern: re.Pattern) -> str:
    """The first group of ``pattern`` searched in the run's directory name (for an event file: its
    folder's), else in its whole path; "(unmatched)" when neither matches."""
    name = path.parent.name if path.is_file() else path.name
    found = pattern.search(name) or pattern.search(path.as_posix())
    return found.group(1) if found and found.group(1) is not None else "(unmatched)"


def shared_overrides(rows: list[RunRow]) -> list[str]:
    """Overrides every run has (``size=smoke``, ``trainer.total_steps=300``): the sweep's setting, not
    what tells its groups apart. Empty when all runs form one group."""
    sets = [_grouping_overrides(r.run) for r in rows]
    if len({frozenset(s) for s in sets}) < 2:
        return []
    return sorted(set.intersection(*sets))


def _grouping_overrides(run: RunDir) -> set[str]:
    return {o for o in run.overrides if not o.startswith(SKIPPED_OVERRIDES)}


def _drop_shared_overrides(rows: list[RunRow]) -> None:
    shared = set(shared_overrides(rows))
    for r in rows:
        r.group = ",".join(sorted(_grouping_overrides(r.run) - shared)) or "(defaults)"


def _split_by_composed_config(rows: list[RunRow]) -> None:
    """Within a group of equal overrides, runs whose composed configs differ (beyond NON_GROUPING_KEYS)
    are different experiments: append the settings that tell them apart to the group's name."""
    by_group: dict[str, list[RunRow]] = {}
    for r in rows:  # a run that never logged (a config rejected at start) has nothing to tell apart
        if r.run.has_config and (r.run.event_files or r.run.results is not None):
            by_group.setdefault(r.group, []).append(r)
    for members in by_group.values():
        flats = [r.run.flat_config() for r in members]
        # A key some runs lack is a setting added after they ran: they ran with its default, which
        # reproduces what came before, so it tells nothing apart (where a default does not, flat_config
        # fills in what such runs ran with: config/saved.py).
        keys = sorted(set.intersection(*(set(f) for f in flats)) - set(NON_GROUPING_KEYS))
        differing = [k for k in keys if len({repr(f[k]) for f in flats}) > 1]
        if not differing:
            continue
        for r, f in zip(members, flats):
            shown = ",".join(f"{k}={_value(f.get(k))}" for k in differing[:MAX_NAMED_KEYS])
            if len(differing) > MAX_NAMED_KEYS:  # the rest by a digest: names stay short and distinct
                digest = hashlib.sha1(repr([f.get(k) for k in differing]).encode()).hexdigest()[:6]
                shown += f",+{len(differing) - MAX_NAMED_KEYS} more #{digest}"
            r.group = shown if r.group == "(defaults)" else f"{r.group} [{shown}]"


def _value(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


INTEGER_COLUMNS = {"seed", "steps"}


def write_runs_csv(rows: list[RunRow], path: Path) -> None:
    import pandas as pd

    base = _common_parent([r.run.path for r in rows])
    records = [{"run": _relative(r.run.path, base), "group": r.group, "overrides": " ".join(r.run.overrides),
                "seed": r.seed, "status": r.status, "score_source": r.source,
                # a finished run may keep the error.txt of an earlier, failed attempt: not a problem now
                "problem": r.problem or (r.run.error_line if r.status != "finished" else None), **r.values}
               for r in rows]
    frame = pd.DataFrame.from_records(records)
    for column in INTEGER_COLUMNS & set(frame.columns):  # counts as integers (600, not 600.0), blank if missing
        frame[column] = frame[column].astype("Int64")
    frame.to_csv(path, index=False)


def _common_parent(paths: list[Path]) -> Path | None:
    """The deepest folder holding every run (a run id is its path from there: the job's name)."""
    import os

    if not paths:
        return None
    parents = [str(Path(p).resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents))


def _relative(path: Path, base: Path | None) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(base)) if base is not None and path.is_relative_to(base) else str(path)


def group_scores(rows: list[RunRow], metric: str) -> dict[str, np.ndarray]:
    """group -> the ``metric`` of its runs that count in the statistics (scored runs with a source)."""
    scored = [r for r in rows if r.scored and r.source is not None]
    return {g: np.array([r.values.get(metric, math.nan) for r in scored if r.group == g])
            for g in sorted({r.group for r in rows})}


def group_table(rows: list[RunRow], metric: str, baseline: str | None, reps: int) -> list[dict]:
    groups = sorted({r.group for r in rows})
    scores = group_scores(rows, metric)
    summary = stats.summarize(scores, reps=reps)
    table = []
    for g in groups:
        s = summary.get(g)
        members = [r for r in rows if r.group == g]
        entry = {"group": g, "runs": len(members), "finished": sum(r.status == "finished" for r in members),
                 "metric": metric,
                 "source": "; ".join(sorted({r.source for r in members if r.scored and r.source})) or None}
        if s:
            entry |= {"n": s.n, "mean": s.mean, "std": s.std, "iqm": s.iqm, "mean_ci_low": s.mean_ci[0],
                      "mean_ci_high": s.mean_ci[1], "iqm_ci_low": s.iqm_ci[0], "iqm_ci_high": s.iqm_ci[1]}
        for net in tags.NETWORKS:
            vals = [r.values.get(f"{net}_clipped_fraction", math.nan) for r in members]
            entry[f"{net}_clipped_fraction"] = float(np.nanmean(vals)) if not np.all(np.isnan(vals)) else math.nan
        if baseline and g != baseline and s and baseline in summary:
            imp = stats.probability_of_improvement(scores[g], scores[baseline], reps=reps)
            entry |= {"p_improvement": imp.probability, "p_ci_low": imp.ci[0], "p_ci_high": imp.ci[1],
                      "significant": imp.significant}
        table.append(entry)
    return table


def markdown(table: list[dict], baseline: str | None) -> str:
    head = ["group", "n", "mean", "std", "IQM [95% CI]", "actor clipped", "critic clipped", "score from"]
    if baseline:
        head.append(f"P(> {baseline}) [95% CI]")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in table:
        if "n" not in e:
            cells = [e["group"], "0", "-", "-", "- (no scored run)", "-", "-", "-"] + (["-"] if baseline else [])
        else:
            cells = [e["group"], str(e["n"]), f"{e['mean']:.3g}", f"{e['std']:.3g}",
                     f"{e['iqm']:.3g} [{e['iqm_ci_low']:.3g}, {e['iqm_ci_high']:.3g}]",
                     _pct(e["actor_clipped_fraction"]), _pct(e["critic_clipped_fraction"]), e["source"] or "-"]
            if baseline:
                cells.append("baseline" if e["group"] == baseline else
                             (f"{e['p_improvement']:.2f} [{e['p_ci_low']:.2f}, {e['p_ci_high']:.2f}]"
                              + (" *" if e["significant"] else "")) if "p_improvement" in e else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latex(table: list[dict], baseline: str | None) -> str:
    """A booktabs table: n, mean, std, IQM [95% CI] and, with a baseline, P(X > baseline) [95% CI] with
    the baseline named in the header and its own row marked."""
    cols = "lrrrl" + ("l" if baseline else "")
    head = "Group & $n$ & Mean & Std & IQM [95\\% CI]"
    if baseline:
        head += f" & $P(X > \\text{{{_tex(baseline)}}})$ [95\\% CI]"
    out = [f"\\begin{{tabular}}{{{cols}}}", "\\toprule", head + " \\\\", "\\midrule"]
    for e in table:
        if "n" not in e:
            continue
        row = (f"{_tex(e['group'])} & {e['n']} & {e['mean']:.3g} & {e['std']:.3g} & "
               f"{e['iqm']:.3g} [{e['iqm_ci_low']:.3g}, {e['iqm_ci_high']:.3g}]")
        if baseline:
            if e["group"] == baseline:
                row += " & baseline"
            elif "p_improvement" in e:
                row += (f" & {e['p_improvement']:.2f} [{e['p_ci_low']:.2f}, {e['p_ci_high']:.2f}]"
                        + ("$^*$" if e["significant"] else ""))
            else:
                row += " & --"
        out.append(row + " \\\\")
    note = ("\\multicolumn{%d}{l}{\\footnotesize $^*$: the CI of $P$ excludes 0.5. CIs: stratified "
            "bootstrap (rliable).} \\\\" % len(cols)) if baseline else None
    return "\n".join(out + ["\\bottomrule", *([note] if note else []), "\\end{tabular}", ""])


def _pct(x: float) -> str:
    return percent(x)


def _tex(s: str) -> str:
    return s.replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")


def default_out(dirs: list[Path]) -> Path:
    """``compare/`` beside the first input (inside none of them: an input stays as it was)."""
    return dirs[0].resolve().parent / "compare"


class NoMetric(ValueError):
    """No run has the metric compare was asked to summarise."""


def compare(dirs: list[Path], out: Path, metric: str, baseline: str | None, reps: int = 2000,
            plots: bool = True, group_by_name: str | None = None, smooth: int = 1) -> dict:
    rows = collect(dirs, metric, group_by_name)
    if not rows:
        raise FileNotFoundError(f"no runs (run directories or TensorBoard event files) under "
                                f"{', '.join(map(str, dirs))}")
    if not any(r.source for r in rows):
        fallbacks = ", ".join(t for t, _ in score_tags(metric))
        raise NoMetric(f"no run has {metric}: not in any results.json"
                       + (f", and no foreign run logged {fallbacks}" if fallbacks else "")
                       + f" ({len(rows)} runs: " + ", ".join(f"{sum(r.status == s for r in rows)} {s}"
                                                            for s in sorted({r.status for r in rows})) + ")")
    out.mkdir(parents=True, exist_ok=True)
    write_runs_csv(rows, out / "runs.csv")
    groups = sorted({r.group for r in rows})
    if baseline and baseline not in groups:
        # "clipping=none" names the one group whose overrides include it (others are shared by all).
        wanted = set(baseline.split(","))
        matches = [g for g in groups if wanted <= set(g.split(","))]
        baseline = matches[0] if len(matches) == 1 else baseline
    if baseline and baseline not in groups:
        raise ValueError(f"baseline group {baseline!r} not found; groups are: {', '.join(groups)}")
    table = group_table(rows, metric, baseline, reps)
    import pandas as pd

    pd.DataFrame.from_records(table).to_csv(out / "groups.csv", index=False)
    (out / "groups.tex").write_text(latex(table, baseline))
    figures = (figures_module.write_all(rows, out, metric, group_scores(rows, metric), baseline, smooth, reps)
               if plots else [])
    problems = [r for r in rows if not r.scored or r.problem]
    return {"rows": rows, "table": table, "markdown": markdown(table, baseline), "problems": problems,
            "figures": figures, "out": out, "baseline": baseline,
            "shared": shared_overrides(rows)}


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="one table over multirun outputs, grouped, with interval estimates",
                       description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="a multirun directory, a run directory or a folder of TensorBoard event files")
    p.add_argument("--metric", default="final/mean_reward",
                   help="per-run score: final/<eval key>, final_<split>/<eval key> (a split of "
                        "trainer.final_eval_splits), best/mean_reward, ... (default: %(default)s)")
    p.add_argument("--baseline", help="group to compare against, e.g. clipping=none")
    p.add_argument("--out", type=Path, help="output folder (default: compare/ beside the first DIR)")
    p.add_argument("--group-by-name", metavar="REGEX",
                   help="group runs by their directory names instead of their overrides: the first capturing "
                        "group of REGEX names the group, e.g. '(.*)_seed\\d+' (runs other code wrote)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only (no figures)")
    p.add_argument("--smooth", type=int, default=1, metavar="N",
                   help="draw curves as a centred rolling mean over N logged points, the raw mean kept faint "
                        "beneath (default: %(default)s, no smoothing)")


def run(args: argparse.Namespace) -> int:
    if report_missing("compare", args.dirs):
        return 2
    try:
        result = compare(args.dirs, args.out or default_out(args.dirs), args.metric, args.baseline, args.reps,
                         plots=not args.no_plots, group_by_name=args.group_by_name, smooth=args.smooth)
    except (FileNotFoundError, ValueError) as e:
        print(f"av-td3 compare: {e}", file=sys.stderr)
        return 2
    rows = result["rows"]
    foreign = sum(r.status == "foreign" for r in rows)
    print(f"{len(rows)} runs ({foreign} foreign: events only), metric {args.metric}; {stats.ci_method(args.reps)}"
          + ("; * = P(improvement) CI excludes 0.5" if args.baseline else ""))
    if result["shared"]:
        print("every run: " + " ".join(result["shared"]))
    print(result["markdown"])
    if foreign and not args.group_by_name and any(r.group == "(defaults)" for r in rows if r.status == "foreign"):
        print("  runs without .hydra/overrides.yaml form one group; --group-by-name REGEX groups them by name")
    for r in result["problems"]:
        why = r.problem or r.run.error_line
        print(f"  {r.status.upper():10s} {r.run.path}" + (f"  ({why})" if why else ""))
    print(f"written to {result['out']}: runs.csv, groups.csv, groups.tex"
          + "".join(f", {p.name}" for p in result["figures"] if p.suffix == ".png"))
    return 0
