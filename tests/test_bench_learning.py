"""benchmarks/bench_learning.py on a real (tiny) task: a finished job is reused by a later call, and --held
reports what OUT holds without training the rest."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_learning.py"
TASK = ["--", "size=smoke", "trainer.final_eval_episodes=1", "env.max_episode_steps=50"]


def bench(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--experiment", "drive_from_camera", "--contenders", "random",
                           "--jobs", "1", "--out", str(out), *args], capture_output=True, text=True, timeout=300)


def test_held_reports_the_jobs_out_holds_and_trains_none_of_the_others(tmp_path):
    ran = bench(tmp_path, "--seeds", "0", *TASK)
    assert ran.returncode == 0, ran.stderr
    held = bench(tmp_path, "--seeds", "0", "1", "--held", *TASK)
    assert held.returncode == 0, held.stderr
    assert "random seed 0: final success" in held.stdout and "earlier call ran it" in held.stdout
    assert "random seed 1: not held" in held.stdout
    assert not (tmp_path / "runs" / "random" / "seed=1").exists()  # nothing ran for it
    assert [r["seed"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]] == [0]
    # another task holds nothing: one line, no report
    other = bench(tmp_path, "--seeds", "0", "--held", "--", "size=smoke")
    assert other.returncode == 1 and "holds none of the requested jobs" in other.stderr
    assert "Traceback" not in other.stderr
