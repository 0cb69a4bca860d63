"""benchmarks/bench_learning.py on a real (tiny) task: a finished job is reused by a later call, --held
reports what OUT holds without training the rest, and a job that goes on from its checkpoint keeps the
earlier call's evaluation record;
git keeps each job's result and none of the rest of its run directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_learning.py"
TASK = ["--", "size=smoke", "trainer.final_eval_episodes=1", "env.max_episode_steps=50"]


def bench(out: Path, contender: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--experiment", "drive_from_camera", "--contenders", contender,
                           "--jobs", "1", "--out", str(out), *args], capture_output=True, text=True, timeout=300)


def test_held_reports_the_jobs_out_holds_and_trains_none_of_the_others(tmp_path):
    ran = bench(tmp_path, "random", "--seeds", "0", *TASK)
    assert ran.returncode == 0, ran.stderr
    held = bench(tmp_path, "random", "--seeds", "0", "1", "--held", *TASK)
    assert held.returncode == 0, held.stderr
    assert "random seed 0: final success" in held.stdout and "earlier call ran it" in held.stdout
    assert "random seed 1: not held" in held.stdout
    assert not (tmp_path / "runs" / "random" / "seed=1").exists()  # nothing ran for it
    assert [r["seed"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]] == [0]
    # another task holds nothing: one line, no report
    other = bench(tmp_path, "random", "--seeds", "0", "--held", "--", "size=smoke")
    assert other.returncode == 1 and "holds none of the requested jobs" in other.stderr
    assert "Traceback" not in other.stderr


@pytest.mark.slow
def test_a_job_that_goes_on_from_its_checkpoint_keeps_the_earlier_calls_evaluation_record(tmp_path):
    """ours' training-phase time leaves out every evaluation's wall time, and its saturation record covers
    every evaluation, the ones an earlier call on the same run directory ran included."""
    def ours(total: int) -> subprocess.CompletedProcess:
        return bench(tmp_path, "ours", "--seeds", "0", *TASK, f"trainer.total_steps={total}",
                     "trainer.learning_starts=100", "trainer.eval_every=0")

    assert (first := ours(150)).returncode == 0, first.stderr
    assert (then := ours(250)).returncode == 0, then.stderr
    run = tmp_path / "runs" / "ours" / "seed=0"
    record = json.loads((run / "evaluations.json").read_text())
    result = json.loads((run / "bench_result.json").read_text())["result"]
    steps = [str(e["step"]) for e in result["evals"]]
    assert len(steps) == 2 and set(steps) == set(record)  # the first call's final evaluation, then the second's
    assert [e["actor_pre_tanh_abs"] for e in result["evals"]] == [record[s]["actor_pre_tanh_abs"] for s in steps]
    assert result["eval_s"] == pytest.approx(sum(record[s]["eval_s"] for s in steps))
    assert 0 < result["eval_s"] < result["wall_s"]


def test_git_keeps_each_jobs_result_and_nothing_else_of_a_comparisons_runs():
    """A comparison grows over calls, perhaps on other machines: each job's bench_result.json must reach git
    (the next call reuses it), its checkpoints and event files must not."""
    root = SCRIPT.parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    runs = "benchmarks/results/some_comparison/runs/ours/seed=0"

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=root).returncode == 0

    assert not ignored(f"{runs}/bench_result.json")
    assert ignored(f"{runs}/checkpoint.pt") and ignored(f"{runs}/evaluations.json")
    assert ignored(f"{runs}/tb/events.out.tfevents.1")
