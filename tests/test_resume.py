"""A real training run killed with SIGKILL and launched again into the same directory finishes with the
right step count, the same TensorBoard (tag, step) pairs as an uninterrupted run (none duplicated, none
missing) and, on the CPU with a fixed seed, the same final metrics."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import SessionLog

from av_td3 import tags
from av_td3.analysis.runs import load_run

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "av_td3.train", "+experiment=smoke", "trainer.total_steps=900",
         "trainer.progress_bar=false", "torch_threads=1"]


def raw_tag_steps(run: Path) -> Counter:
    """(tag, step) pairs as TensorBoard shows them, read with TensorBoard's own loader (not ours): files
    in write order, and a SessionLog.START at step s (a resume's purge_step) drops earlier events at
    steps >= s."""
    kept: list[tuple[str, int]] = []
    for path in sorted(run.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                kept = [(t, s) for t, s in kept if s < event.step]
            for value in event.summary.value:
                kept.append((value.tag, event.step))
    return Counter(kept)


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must equal."""
    run = tmp_path_factory.mktemp("uninterrupted") / "whole"
    subprocess.run(TRAIN + [f"hydra.run.dir={run}"], check=True, capture_output=True, timeout=600)
    return run


def assert_same_run(whole: Path, resumed: Path) -> None:
    """Final metrics, evaluations, counts, CSVs and every TensorBoard (tag, step) pair and value equal."""
    a = json.loads((whole / "results.json").read_text())
    b = json.loads((resumed / "results.json").read_text())
    assert b["status"] == "finished" and b["step"] == a["step"] >= a["total_steps"] and (resumed / "DONE").exists()
    assert b["final_eval"] == a["final_eval"]
    assert b["evals"] == a["evals"] and b["updates"] == a["updates"] and b["episodes"] == a["episodes"]
    for table in ("train.csv", "eval.csv"):
        assert (resumed / table).read_text() == (whole / table).read_text(), table
    steps_whole, steps_resumed = raw_tag_steps(whole), raw_tag_steps(resumed)
    assert max(steps_resumed.values()) == 1, "a (tag, step) pair was written twice"
    assert steps_resumed == steps_whole
    sa, sb = load_run(whole).read_all(), load_run(resumed).read_all()
    assert set(sa) == set(sb)
    for tag in set(sa) - {tags.STEPS_PER_SECOND}:  # wall-clock speed differs between any two runs
        np.testing.assert_array_equal(sb[tag].steps, sa[tag].steps, err_msg=tag)
        np.testing.assert_allclose(sb[tag].values, sa[tag].values, rtol=1e-6, err_msg=tag)


def test_sigkill_then_relaunch_matches_an_uninterrupted_run(tmp_path, whole):
    killed = tmp_path / "killed"

    proc = subprocess.Popen(TRAIN + [f"hydra.run.dir={killed}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint.pt").exists():  # the first checkpoint: at an episode end >= 300
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before a checkpoint"
        time.sleep(0.02)
    time.sleep(1.0)  # mid-way between checkpoints: work the relaunch must redo
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "DONE").exists() and not (killed / "results.json").exists()
    first_session = torch.load(killed / "checkpoint.pt", weights_only=True)["wall_time"]

    r = subprocess.run(TRAIN + [f"hydra.run.dir={killed}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stderr + r.stdout
    assert len(list(killed.glob("events.out.tfevents.*"))) == 2  # one per session

    b = json.loads((killed / "results.json").read_text())
    # Wall time adds up over sessions: the first session's, up to its checkpoint, counts too.
    assert first_session > 0 and b["wall_time_s"] > first_session
    assert_same_run(whole, killed)


def test_sigterm_exits_143_prints_the_resume_command_and_resumes_exactly(tmp_path, whole):
    import shlex

    run = tmp_path / "run"
    proc = subprocess.Popen(TRAIN + [f"hydra.run.dir={run}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while not (run / "train.csv").exists():  # training has started
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    command = err.split("Resume with:\n", 1)[1].strip().splitlines()[0]
    argv = shlex.split(command)
    assert argv[0] == "av-td3-train" and f"hydra.run.dir={run.absolute()}" in argv
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "stopped" and results["wall_time_s"] > 0
    assert "at an episode boundary" in out + err  # the episode in progress was finished, then checkpointed
    r = subprocess.run([sys.executable, "-m", "av_td3.train", *argv[1:]], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(whole, run)  # as exact as SIGKILL's resume


def test_a_second_signal_stops_at_once_and_the_resume_is_still_exact(tmp_path, whole):
    run = tmp_path / "run"
    proc = subprocess.Popen(TRAIN + [f"hydra.run.dir={run}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while not (run / "checkpoint.pt").exists():  # mid-run, after a first checkpoint
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # impatient: do not wait for the episode to end
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    r = subprocess.run(TRAIN + [f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(whole, run)


def test_one_writer_per_run_dir_and_a_dead_holder_does_not_block(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(TRAIN + [f"hydra.run.dir={run}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run / "train.csv").exists():
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    second = subprocess.run(TRAIN + [f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 3
    assert f"pid {first.pid} on " in second.stderr and "in use" in second.stderr
    assert not (run / "error.txt").exists()  # the second process wrote nothing into the directory
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    r = subprocess.run(TRAIN + [f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "results.json").read_text())["status"] == "finished"


def test_ctrl_c_of_a_sweep_stops_it_and_prints_the_sweep_command_that_resumes_it(tmp_path):
    import shlex

    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "av_td3.train", "-m", *TRAIN[3:], "seed=0,1",
                             f"hydra.sweep.dir={sweep}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while not list(sweep.glob("*/checkpoint.pt")):  # the first job is training
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "Traceback" not in err and "sweep stopped by SIGINT" in err
    command = err.split("Resume with (finished jobs are skipped):\n", 1)[1].strip().splitlines()[0]
    argv = shlex.split(command)
    assert "seed=0,1" in argv and f"hydra.sweep.dir={sweep.absolute()}" in argv  # the sweep's, not the job's
    assert not list(sweep.glob("*seed=1"))  # the sweep stopped: the second job never started
    r = subprocess.run([sys.executable, "-m", "av_td3.train", *argv[1:]], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list(sweep.glob("*/DONE"))) == 2


PARALLEL = TRAIN + ["trainer.total_steps=600", "trainer.num_envs=2", "env.worker=true", "env.random_start=1.0",
                    "env.random_start_speed=8"]


def test_two_parallel_envs_resume_exactly_after_sigkill(tmp_path):
    """trainer.num_envs=2 in worker processes, episodes of unequal length (random starts leave the road
    at different times): checkpoints wait for both envs' episodes to end, so a SIGKILLed run relaunched
    equals an uninterrupted one."""
    whole = tmp_path / "whole"
    subprocess.run(PARALLEL + [f"hydra.run.dir={whole}"], check=True, capture_output=True, timeout=600)
    lengths = [int(line.split(",")[3]) for line in (whole / "train.csv").read_text().splitlines()[1:]]
    assert len(set(lengths)) > 1  # the envs' episodes end at different times: the wait is exercised
    killed = tmp_path / "killed"
    proc = subprocess.Popen(PARALLEL + [f"hydra.run.dir={killed}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before a checkpoint"
        time.sleep(0.02)
    time.sleep(1.0)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    r = subprocess.run(PARALLEL + [f"hydra.run.dir={killed}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stderr + r.stdout
    assert_same_run(whole, killed)


def test_a_resume_that_composes_other_settings_names_them(tmp_path):
    """A stopped run relaunched with a setting that differs from the one its checkpoint was saved with (an
    override added, or a default changed since) names it in one warning; a longer budget is not named."""
    run = tmp_path / "run"
    proc = subprocess.Popen(TRAIN + [f"hydra.run.dir={run}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run / "train.csv").exists():  # training has started
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    r = subprocess.run(TRAIN + ["trainer.total_steps=1000", "agent.tau=0.01", f"hydra.run.dir={run}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (run / "train.log").read_text()
    warning = next(line for line in log.splitlines() if "resumed with settings" in line)
    assert "agent.tau: 0.005, now 0.01" in warning and "total_steps" not in warning
    assert json.loads((run / "results.json").read_text())["step"] >= 1000
