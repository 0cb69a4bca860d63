"""``av-td3 report EXPERIMENT``: reproduce an ablation end to end with one command.

    av-td3 report clipping_ablation --size smoke      # minutes on 2 cores
    av-td3 report clipping_ablation                   # SPEC scale: 20 runs
    av-td3 report td3_vs_ddpg --launcher slurm -- hydra.launcher.partition=gpu
    av-td3 report clipping_ablation --no-run          # only analyse what the sweep holds now

1. Runs the experiment's sweep (``av-td3-train -m +experiment=EXPERIMENT [size=SIZE]``) into its fixed
   sweep directory, ``multirun/EXPERIMENT/SIZE``. Launched again, it resumes: finished runs are skipped,
   interrupted ones continue from their checkpoints, failed and missing ones run.
2. Validates every run (``av-td3 validate``) and compares them (``av-td3 compare``) against the
   experiment's baseline group.
3. Writes ``SWEEP/report/``: ``summary.md`` (n per group, the interval method, which differences are
   significant, failed runs), the tables (``runs.csv``, ``groups.csv``, ``groups.tex``,
   ``metrics.md``), the figures (``curves``, ``grad_norms``, ``update_ratio``, ``aggregate`` as PNG and
   PDF; see ``av_td3/analysis/figures.py``) and ``validate.txt``.

Exit status: 0 when the sweep succeeded, every run finished and none failed validation; 1 when the
report was written but the sweep process failed, or some runs failed, are unfinished or failed
validation (they are listed); 2 on a usage error (an unknown experiment or size, no runs).
Extra arguments after ``--`` are passed to the sweep as Hydra overrides (they become part of the job
names, so use the same ones to resume).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from av_td3.analysis import compare as cmp
from av_td3.analysis import stats
from av_td3.analysis import validate as val
from av_td3 import available_cores
from av_td3 import tags
from av_td3.analysis.runs import DONE, STATUSES, RunRow, discover_runs, find_run_paths, read_scalars
from av_td3.helptext import plain

# The group each experiment's other groups are measured against (compare's --baseline). Experiments
# not listed (a grid, an Optuna search) are summarised without significance tests unless --baseline.
BASELINES = {
    "clipping_ablation": "clipping=none",
    "td3_vs_ddpg": "agent=ddpg",
    "learn_to_drive_ablation": "levers=reference",
    "vision_ablation": "view=camera_off",
    "drive_from_camera_ablation": "without=nothing",
    "actor_clipping": "clip_arm=none",
}
DEFAULT_SIZE = "full"  # conf/config.yaml's choice; left off the command so job names match a plain -m run
METRIC = "final/mean_reward"
# Further per-run scores tabulated in metrics.md (final evaluation keys written by the trainer).
SECONDARY = ["final/success_rate", "final/avg_collisions", "final/avg_lane_invasions",
             "final/avg_episode_length"]


def experiments() -> dict[str, Path]:
    """Experiment name -> YAML file, for the experiments that define a sweep."""
    from av_td3 import config_dir

    found = {}
    for path in sorted((config_dir() / "experiment").glob("*.yaml")):
        if "sweeper:" in path.read_text():
            found[path.stem] = path
    return found


def experiment_size(name: str) -> str:
    """The size an experiment runs at unless told otherwise: its ``override /size:`` default (the
    learn_to_drive experiments run at ``drive``), else that of the experiment it builds on (a plain
    ``- other_experiment`` default: vision_ablation runs at drive_from_camera's ``camera``), else
    conf/config.yaml's ``full``."""
    from omegaconf import OmegaConf

    from av_td3 import config_dir

    inherited = DEFAULT_SIZE
    for entry in OmegaConf.load(config_dir() / "experiment" / f"{name}.yaml").get("defaults", None) or []:
        if hasattr(entry, "get") and entry.get("override /size") is not None:
            return str(entry.get("override /size"))
        if isinstance(entry, str) and (config_dir() / "experiment" / f"{entry}.yaml").is_file():
            inherited = experiment_size(entry)
    return inherited


def sweep_command(name: str, size: str, sweep_dir: Path, launcher: str, jobs: int,
                  overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "av_td3.train", "-m", f"+experiment={name}"]
    if size != experiment_size(name):  # left off otherwise, so job names match a plain -m run
        cmd.append(f"size={size}")
    if launcher == "joblib":
        cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs or available_cores()}"]
    elif launcher != "basic":
        cmd.append(f"hydra/launcher={launcher}")
    # trainer.progress_bar is not part of job names (conf/config.yaml), so resuming by hand still matches
    return cmd + [f"hydra.sweep.dir={sweep_dir}", "trainer.progress_bar=false", *overrides]


def run_sweep(cmd: list[str]) -> int:
    """The sweep in a child process (Hydra owns its process: logging, working dir, launcher state)."""
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode


def validate_all(sweep_dir: Path) -> list[val.RunReport]:
    opts = val.Options()
    return [val.validate_run(run, opts) for run in discover_runs([sweep_dir])]


def secondary_table(rows: list[RunRow], reps: int) -> str:
    """Mean [95% CI] and IQM [95% CI] per group for the secondary evaluation metrics, as markdown."""
    groups = sorted({r.group for r in rows})
    finished = [r for r in rows if r.status == "finished"]
    metrics = [m for m in SECONDARY if any(m in r.values for r in finished)]
    if not metrics:
        return ""
    lines = ["| group | " + " | ".join(m.removeprefix("final/") for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    summaries = {m: stats.summarize({g: [r.values.get(m, math.nan) for r in finished if r.group == g]
                                     for g in groups}, reps=reps) for m in metrics}
    for g in groups:
        cells = []
        for m in metrics:
            s = summaries[m].get(g)
            cells.append("-" if s is None else f"{s.mean:.3g} [{s.mean_ci[0]:.3g}, {s.mean_ci[1]:.3g}]; IQM "
                                               f"{s.iqm:.3g} [{s.iqm_ci[0]:.3g}, {s.iqm_ci[1]:.3g}]")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# (window, fraction of a run's logged updates where it starts, where it ends)
UPDATE_WINDOWS = [("first quarter", 0.0, 0.25), ("second half", 0.5, 1.0)]


def update_ratio_table(rows: list[RunRow], reps: int, baseline: str | None) -> str:
    """Per group and network: each run's median ||step|| / ||weights|| (debug/<net>_update_ratio) over the
    first quarter and the second half of its logged updates, summarised over runs as IQM [95% CI] and n;
    with a baseline, each group's IQM as a multiple of the baseline's. Empty when no run logged it."""
    scored = [r for r in rows if r.scored]
    per_run: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in scored:
        found = read_scalars(r.run, [tags.update_ratio(net) for net in tags.NETWORKS])
        for net in tags.NETWORKS:
            series = found.get(tags.update_ratio(net))
            if series is None or not len(series.values):
                continue
            for window, lo, hi in UPDATE_WINDOWS:
                n = len(series.values)
                part = series.values[int(lo * n):max(int(hi * n), int(lo * n) + 1)]
                per_run.setdefault((net, window), {}).setdefault(r.group, []).append(float(np.median(part)))
    if not per_run:
        return ""
    groups = sorted({g for by_group in per_run.values() for g in by_group})
    columns = [(net, w) for net in tags.NETWORKS for w, _, _ in UPDATE_WINDOWS if (net, w) in per_run]
    summaries = {c: stats.summarize({g: np.array(v) for g, v in per_run[c].items()}, reps=reps) for c in columns}
    lines = ["| group | " + " | ".join(f"{net}, {w}" for net, w in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for g in groups:
        cells = []
        for c in columns:
            s = summaries[c].get(g)
            if s is None:
                cells.append("-")
                continue
            cell = f"{s.iqm:.2e} [{s.iqm_ci[0]:.2e}, {s.iqm_ci[1]:.2e}] (n={s.n})"
            base = summaries[c].get(baseline) if baseline else None
            if base is not None and g != baseline and base.iqm > 0:
                cell += f", {s.iqm / base.iqm:.2g}x"
            cells.append(cell)
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_videos(rows: list[RunRow], out: Path) -> list[tuple[str, Path]]:
    """(group, copy in OUT/videos/) of the final evaluation's video (trainer.eval_video) of each group's
    first finished run (lowest seed): what the policy the table scores does."""
    import shutil

    from av_td3.rundir import VIDEOS

    found = []
    for g in sorted({r.group for r in rows}):
        members = sorted((r for r in rows if r.group == g and r.status == "finished"),
                         key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0))
        for r in members:
            gifs = sorted((Path(r.run.path) / VIDEOS).glob("eval_*.gif"))
            if gifs:
                target = out / VIDEOS / (re.sub(r"[^A-Za-z0-9._=-]+", "_", g) + ".gif")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(gifs[-1], target)
                found.append((f"{g} (seed {r.seed}, {gifs[-1].stem.removeprefix('eval_').lstrip('0') or '0'} "
                              f"frames)", target))
                break
    return found


def significance_lines(table: list[dict], baseline: str | None) -> list[str]:
    if not baseline:
        return ["No baseline group, so no significance tests (pass --baseline GROUP to add them)."]
    tested = [e for e in table if "p_improvement" in e]
    out = []
    for e in tested:
        if e["significant"]:
            verdict = "better than" if e["p_improvement"] > 0.5 else "worse than"
            out.append(f"- **{e['group']}** is {verdict} the baseline: P(X > baseline) = "
                       f"{e['p_improvement']:.2f} [{e['p_ci_low']:.2f}, {e['p_ci_high']:.2f}]")
    if not out:
        n = sorted({e["n"] for e in tested}) if tested else []
        out.append(f"No group differs significantly from the baseline `{baseline}`"
                   + (f" at n = {', '.join(map(str, n))} runs per group." if n else "."))
    return out


def sizes() -> list[str]:
    from av_td3 import config_dir

    return sorted(p.stem for p in (config_dir() / "size").glob("*.yaml"))


def reproduce_command(name: str, size: str, overrides: list[str], launcher: str = "joblib", jobs: int = 0,
                      baseline: str | None = None) -> str:
    """The ``av-td3 report`` command that runs what ran: every option that changed the sweep or the
    analysis (the sweep's job names depend on the overrides, so a resume needs the same ones)."""
    parts = [f"av-td3 report {name}"]
    if size != experiment_size(name):
        parts.append(f"--size {size}")
    if launcher != "joblib":
        parts.append(f"--launcher {launcher}")
    if jobs:
        parts.append(f"--jobs {jobs}")
    if baseline and baseline != BASELINES.get(name):
        parts.append(f"--baseline {baseline}")
    if overrides:
        parts.append("-- " + " ".join(overrides))
    return " ".join(parts)


def summary_markdown(name: str, size: str, overrides: list[str], sweep_dir: Path, command: list[str],
                     result: dict, baseline: str | None, reports: list[val.RunReport], secondary: str,
                     reps: int, reproduce: str | None = None, updates: str = "", out: Path | None = None) -> str:
    rows = result["rows"]
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    ns = sorted({e["n"] for e in result["table"] if "n" in e})
    verdicts = {v: sum(r.verdict == v for r in reports) for v in ("PASS", "WARN", "FAIL", "ERROR", "SKIP")}
    md = [f"# {name} (size={size})", "",
          f"Reproduce: `{reproduce or reproduce_command(name, size, overrides)}`  ",
          f"Sweep: `python {' '.join(command[1:])}`  ",
          *([f"Every run: `{' '.join(result['shared'])}`  "] if result["shared"] else []),
          f"Runs: {len(rows)} (" + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + ")  ",
          f"Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
          "## Final evaluation return", "",
          f"Score per run: `{METRIC}`, the mean return of the final deterministic evaluation. "
          f"n = finished runs (seeds) per group: {', '.join(map(str, ns)) or 'none'}. "
          f"Intervals: 95% stratified-bootstrap confidence intervals (rliable, percentile method, {reps} "
          "resamples) of the mean and of the interquartile mean (IQM). "
          + (f"P(X > {baseline}) is the probability that a run of the group scores higher than a run of "
             "the baseline (Mann-Whitney), with its bootstrap CI; * marks a CI that excludes 0.5, which "
             "is what this report calls significant." if baseline else ""), "",
          result["markdown"], "", "### Significant differences", "",
          *significance_lines(result["table"], baseline), ""]
    if secondary:
        md += ["## Other final metrics (mean [95% CI]; IQM [95% CI])", "", secondary, ""]
    if updates:
        md += ["## Update size", "",
               "Each run's median `||step|| / ||weights||` of one optimizer step (`debug/<net>_update_ratio`, "
               "logged every trainer.log_every_updates updates) over the first quarter and over the second "
               "half of its logged updates; per group the IQM over runs with its 95% stratified-bootstrap CI"
               + (f", and its IQM as a multiple of the baseline's (`{baseline}`)" if baseline else "")
               + ". A healthy step is near 1e-3; `av-td3 validate` flags a network whose second-half median "
               "is below --frozen-below as frozen.", "", updates, ""]
    best = sweep_dir / "optimization_results.yaml"  # what Hydra's Optuna sweeper found
    if best.is_file():
        md += ["## Optuna search result", "", "```yaml", best.read_text().strip(), "```", ""]
    figure_names = {p.name for p in result["figures"]}
    captions = [("aggregate.png", f"Per-run `{METRIC}`: IQM and mean with 95% CIs per group, the performance "
                                  "profile, and P(group > baseline)"),
                ("curves.png", "Evaluation return and success rate: mean over runs, 95% bootstrap band"),
                ("grad_norms.png", "Gradient norms before (solid) and after (dashed) clipping, whole network "
                                   "and each part, with each group's clip limit (dotted)"),
                ("update_ratio.png", "Update size ||step|| / ||weights|| per network")]
    md += ["## Figures", ""]
    for name, caption in captions:
        if name in figure_names:
            md += [f"{caption}:", "", f"![{caption}]({name})", ""]
    videos = final_videos(rows, out) if out is not None else []
    if videos:
        md += ["## The final policies", "",
               "Each group's first finished run, its final evaluation's first episode (trainer.eval_video): "
               "the camera image the policy sees, beside the embedded simulator's render.", ""]
        for caption, path in videos:
            md += [f"{caption}:", "", f"![{caption}]({path.relative_to(out)})", ""]
    md += ["## Validation (`av-td3 validate`)", "",
           ", ".join(f"{v} {k}" for k, v in verdicts.items() if v) + " (details in `validate.txt`)"
           + ("; SKIP: kept runs (`av-td3 keep`), whose event files stayed with the runs they were kept from"
              if verdicts["SKIP"] else ""), ""]
    problems = [r for r in reports if r.verdict in ("FAIL", "ERROR")]
    md += [f"- {val.verdict_line(r)}" for r in problems]
    md += ["", "## Failed and unfinished runs", ""]
    bad = result["problems"]
    md += [f"- {r.status}: `{r.run.path.name}`" + (f" ({r.problem or r.run.error_line})"
                                                    if r.problem or r.run.error_line else "")
           for r in bad] or ["None."]
    md += ["", "Relaunch the Reproduce command to rerun failed runs and resume unfinished ones (finished runs "
           "are skipped).", ""]
    # A finished run (DONE) that failed validation is skipped by a relaunch: only removing it reruns it.
    done_but_bad = [r for r in reports if r.verdict in ("FAIL", "ERROR") and (Path(r.path) / DONE).exists()]
    if done_but_bad:
        md += ["Finished runs that failed validation are skipped by a relaunch (they hold `DONE`); to rerun "
               "one, remove its directory first:", "", "```",
               *[f"rm -r {r.path}" for r in done_but_bad], "```", ""]
    return "\n".join(md)


def report(name: str, size: str, overrides: list[str], sweep_dir: Path, out: Path, command: list[str],
           baseline: str | None, reps: int, reproduce: str | None = None) -> tuple[int, Path]:
    reports = validate_all(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "validate.txt").write_text("\n\n".join(val.format_report(r) for r in reports) + "\n")
    result = cmp.compare([sweep_dir], out, METRIC, baseline, reps=reps)
    secondary = secondary_table(result["rows"], reps)
    updates = update_ratio_table(result["rows"], reps, result.get("baseline"))
    (out / "metrics.md").write_text(result["markdown"] + "\n\n" + secondary + "\n\n" + updates + "\n")
    summary = out / "summary.md"
    summary.write_text(summary_markdown(name, size, overrides, sweep_dir, command, result,
                                        result.get("baseline"), reports, secondary, reps, reproduce, updates, out))
    print(summary.read_text())
    ok = not result["problems"] and not any(r.verdict in ("FAIL", "ERROR") for r in reports)
    return (0 if ok else 1), summary


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="run (or resume), validate and compare an ablation; write a report",
                       description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", help="an experiment in experiments/ with a sweep: "
                                      + ", ".join(experiments()))
    p.add_argument("--size", help="conf/size option: full (SPEC), drive (learn_to_drive's scale) or smoke "
                                  "(default: the experiment's own, else full)")
    p.add_argument("--sweep-dir", type=Path, help="default: multirun/EXPERIMENT/SIZE (as the experiment)")
    p.add_argument("--out", type=Path, help="report folder (default: SWEEP_DIR/report)")
    p.add_argument("--launcher", default="joblib",
                   help="joblib (parallel on this machine, default), basic (one after another), or a "
                        "conf/hydra/launcher option such as slurm, submitit_local, ray")
    p.add_argument("--jobs", type=int, default=0, help="joblib: parallel jobs (default: one per core)")
    p.add_argument("--baseline", help="baseline group (default: the experiment's, e.g. clipping=none)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--no-run", action="store_true", help="do not launch the sweep; report on what is there")
    p.set_defaults(passthrough=[])  # filled by av_td3.cli from the arguments after "--"


def run(args: argparse.Namespace) -> int:
    known = experiments()
    if args.experiment not in known:
        print(f"av-td3 report: unknown experiment {args.experiment!r}; experiments with a sweep: "
              f"{', '.join(known)}", file=sys.stderr)
        return 2
    args.size = args.size or experiment_size(args.experiment)
    if args.size not in sizes():
        print(f"av-td3 report: unknown size {args.size!r}; conf/size options: {', '.join(sizes())}",
              file=sys.stderr)
        return 2
    sweep_dir = (args.sweep_dir or Path("multirun") / args.experiment / args.size).absolute()
    cmd = sweep_command(args.experiment, args.size, sweep_dir, args.launcher, args.jobs, args.passthrough)
    sweep_code = 0
    if not args.no_run:
        sweep_code = run_sweep(cmd)
        if sweep_code:  # a failed job fails the sweep process; the others ran, so report what is there
            print(f"av-td3 report: the sweep exited with status {sweep_code}; reporting what it produced "
                  "(this report exits non-zero)", file=sys.stderr)
    if not sweep_dir.is_dir() or not find_run_paths(sweep_dir):
        print(f"av-td3 report: no runs in {sweep_dir}" + (" (drop --no-run to launch the sweep)"
                                                          if args.no_run else ""), file=sys.stderr)
        return 2
    baseline = args.baseline or BASELINES.get(args.experiment)
    try:
        reproduce = reproduce_command(args.experiment, args.size, args.passthrough, args.launcher, args.jobs,
                                      args.baseline)
        code, summary = report(args.experiment, args.size, args.passthrough, sweep_dir,
                               args.out or sweep_dir / "report", cmd, baseline, args.reps, reproduce)
    except (FileNotFoundError, ValueError) as e:
        print(f"av-td3 report: {e}", file=sys.stderr)
        return 2
    print(f"report written to {summary.parent}")
    return max(code, 1 if sweep_code else 0)
