"""A real smoke-scale clipping ablation through ``av-td3 report``: one job fails (a corrupt checkpoint in
its directory), the others finish; relaunched, the finished jobs are skipped and the failed one reruns.
Then ``av-td3 compare`` is checked against a hand computation from the raw event files."""

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import trim_mean
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util.tensor_util import make_ndarray

from av_td3 import tags

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "av_td3.cli"]
SWEEP = ["clipping=none,reference", "seed=0,1,2", "trainer.total_steps=300", "trainer.learning_starts=100"]
SHARED = "size=smoke,trainer.learning_starts=100,trainer.total_steps=300"  # in every job's name
GROUPS = {"clipping=none": "none", "clipping=reference": "reference"}


def report(cwd: Path, sweep_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["report", "clipping_ablation", "--size", "smoke", "--sweep-dir", str(sweep_dir),
                                 "--jobs", "2", "--reps", "500", "--"] + SWEEP,
                          capture_output=True, text=True, timeout=900, cwd=cwd)


def job_dir(sweep_dir: Path, clipping: str, seed: int) -> Path:
    return sweep_dir / f"clipping={clipping},{SHARED},seed={seed}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    sweep_dir = root / "multirun"
    failing = job_dir(sweep_dir, "reference", 1)
    failing.mkdir(parents=True)
    (failing / "checkpoint.pt").write_bytes(b"not a checkpoint")  # e.g. a disk that filled up
    first = report(root, sweep_dir)
    done_before = {p.parent: p.stat().st_mtime_ns for p in sweep_dir.glob("*/DONE")}
    (failing / "checkpoint.pt").rename(failing / "checkpoint.pt.bad")  # what the error tells the user
    second = report(root, sweep_dir)
    return SimpleNamespace(dir=sweep_dir, failing=failing, first=first, second=second, done_before=done_before)


def test_a_failed_job_leaves_the_others_and_reruns_on_relaunch(sweep):
    first = sweep.first
    assert first.returncode == 1, first.stderr[-3000:]  # report written, with a failed run
    assert "the sweep exited with status" in first.stderr
    error = (sweep.failing / "error.1.txt").read_text()  # kept, renamed when the job ran again
    assert "cannot load checkpoint" in error and "Traceback" in error
    assert not (sweep.failing / "error.txt").exists()  # the rerun succeeded
    assert set(sweep.done_before) == {job_dir(sweep.dir, c, s) for c in GROUPS.values() for s in range(3)} - {
        sweep.failing}
    assert f"failed: `{sweep.failing.name}` (RuntimeError: cannot load checkpoint" in first.stdout

    second = sweep.second
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert (second.stdout + second.stderr).count("skipping") == 5
    for run, mtime in sweep.done_before.items():  # finished runs were not touched
        assert (run / "DONE").stat().st_mtime_ns == mtime
    assert (sweep.failing / "DONE").exists()
    results = [json.loads(p.read_text()) for p in sweep.dir.glob("*/results.json")]
    assert len(results) == 6 and all(r["status"] == "finished" and r["step"] == 300 for r in results)
    assert "Runs: 6 (6 finished)" in second.stdout


def test_report_folder(sweep):
    out = sweep.dir / "report"
    for name in ("summary.md", "runs.csv", "groups.csv", "groups.tex", "metrics.md", "validate.txt",
                 "curves.png", "curves.pdf", "grad_norms.png", "grad_norms.pdf"):
        assert (out / name).stat().st_size > 0, name
    summary = (out / "summary.md").read_text()
    assert "n = finished runs (seeds) per group: 3" in summary
    assert f"Reproduce: `av-td3 report clipping_ablation --size smoke --jobs 2 -- {' '.join(SWEEP)}`" in summary
    assert "stratified-bootstrap" in summary and "500 resamples" in summary
    assert "### Significant differences" in summary and "`clipping=none`" in summary
    assert "| clipping=reference | 3 |" in summary
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 and runs["problem"].isna().all()  # the rerun job's old error is history


def raw_events(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of a (single-session) run, read with TensorBoard's own loader."""
    series = defaultdict(list)
    for path in sorted(run.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    series[v.tag].append((event.step, v.simple_value))
                elif v.metadata.plugin_data.plugin_name == "scalars":  # a scalar stored as a tensor
                    series[v.tag].append((event.step, make_ndarray(v.tensor).item()))
    return {t: (np.array([s for s, _ in xs]), np.array([v for _, v in xs])) for t, xs in series.items()}


def p_improvement(x, y) -> float:
    return float(np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y]))


@pytest.mark.parametrize("metric", ["final/mean_reward", "critic_max_before_norm"])
def test_compare_matches_a_hand_computation(sweep, tmp_path, metric):
    out = tmp_path / "compare"
    c = subprocess.run(CLI + ["compare", str(sweep.dir), "--baseline", "clipping=none", "--metric", metric,
                              "--out", str(out), "--reps", "500", "--no-plots"],
                       capture_output=True, text=True, timeout=300)
    assert c.returncode == 0, c.stdout + c.stderr
    assert f"every run: {SHARED.replace(',', ' ')}" in c.stdout

    scores, clipped = {}, {}
    for group, clipping in GROUPS.items():
        runs = [raw_events(job_dir(sweep.dir, clipping, s)) for s in range(3)]
        if metric == "final/mean_reward":  # the last evaluation, at the final step
            scores[group] = np.array([r[tags.EVAL_MEAN_REWARD][1][-1] for r in runs])
        else:
            scores[group] = np.array([r[tags.grad_norm("critic", "BEFORE")][1].max() for r in runs])
        clipped[group] = np.mean([r[tags.clipped("actor")][1].mean() for r in runs])
    table = pd.read_csv(out / "groups.csv").set_index("group")
    for group, x in scores.items():
        row = table.loc[group]
        assert row["n"] == 3 and row["runs"] == 3 and row["finished"] == 3
        np.testing.assert_allclose(row["mean"], x.mean(), rtol=1e-5)
        np.testing.assert_allclose(row["std"], x.std(ddof=1), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(row["iqm"], trim_mean(x, 0.25), rtol=1e-5)
        assert row["mean_ci_low"] - 1e-6 <= x.mean() <= row["mean_ci_high"] + 1e-6
        assert x.min() - 1e-6 <= row["mean_ci_low"] and row["mean_ci_high"] <= x.max() + 1e-6
        np.testing.assert_allclose(row["actor_clipped_fraction"], clipped[group], rtol=1e-6, atol=1e-12)
        assert f"| {group} | 3 | {x.mean():.3g} | {x.std(ddof=1):.3g} |" in c.stdout
    np.testing.assert_allclose(table.loc["clipping=reference", "p_improvement"],
                               p_improvement(scores["clipping=reference"], scores["clipping=none"]), rtol=1e-6)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 and set(runs["status"]) == {"finished"}


def test_kept_runs_compare_as_the_sweep_did(sweep, tmp_path):
    """`av-td3 keep` of every job, then compare over the kept folders: the same groups, seeds and statistics
    as over the sweep itself (the clipped fractions come from event files, which a kept run leaves behind)."""
    kept = tmp_path / "kept"
    for job in sorted(p for p in sweep.dir.iterdir() if (p / "DONE").exists()):
        k = subprocess.run(CLI + ["keep", str(job), str(kept / job.name)], capture_output=True, text=True, timeout=120)
        assert k.returncode == 0, k.stderr
        assert not list((kept / job.name).glob("events.*")) and not (kept / job.name / "checkpoint.pt").exists()
    tables = {}
    for name, where in (("sweep", sweep.dir), ("kept", kept)):
        out = tmp_path / f"compare_{name}"
        c = subprocess.run(CLI + ["compare", str(where), "--baseline", "clipping=none", "--out", str(out),
                                  "--reps", "500", "--no-plots"], capture_output=True, text=True, timeout=300)
        assert c.returncode == 0, c.stdout + c.stderr
        tables[name] = pd.read_csv(out / "groups.csv").set_index("group")
    columns = ["n", "finished", "mean", "std", "iqm", "iqm_ci_low", "iqm_ci_high", "p_improvement"]
    assert list(tables["kept"].index) == list(GROUPS)
    pd.testing.assert_frame_equal(tables["kept"][columns], tables["sweep"][columns])
