"""envs/worker.py: envs in supervised worker processes. A worker killed (SIGKILL) or hung (SIGSTOP) during
a real training run costs one episode and the run finishes; a killed eval worker's episode is run again;
too many failures in a row stop the run with a checkpoint and a clear error, and a relaunch resumes."""

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from av_td3.config import ConfigError, HighwayEnvConfig
from av_td3.envs.errors import EnvFailed, EpisodeLost
from av_td3.envs.highway import HighwayDrivingEnv
from av_td3.envs.worker import EnvWorkerError, SupervisedEnv, Turns
from av_td3.evaluation import evaluate

from test_highway_env import pure_pursuit

TRAIN = [sys.executable, "-m", "av_td3.train", "+experiment=smoke", "trainer.progress_bar=false", "torch_threads=1",
         "env.worker=true", "env.reconnect_delay=0"]


def highway(npc: int = 20) -> HighwayDrivingEnv:
    return HighwayDrivingEnv(HighwayEnvConfig(image_height=24, image_width=24, max_episode_steps=60), npc,
                             role="eval")


def supervised(**changes) -> SupervisedEnv:
    settings = dict(name="eval", step_timeout=10.0, start_timeout=60.0, max_reconnects=3, reconnect_delay=0.0)
    return SupervisedEnv(functools.partial(highway), **settings | changes)


class KillingDriver:
    """Pure pursuit that SIGKILLs the env's worker once, at its ``at``-th action."""

    def __init__(self, env: SupervisedEnv | None = None, at: int = -1):
        self.env, self.at, self.calls = env, at, 0

    def act(self, obs):
        self.calls += 1
        if self.calls == self.at:
            os.kill(self.env.pid, signal.SIGKILL)
        return pure_pursuit(obs)


def test_an_eval_episode_whose_worker_is_killed_is_run_again_with_the_same_result():
    env = supervised()
    try:
        seeds = [11, 12, 13]
        clean = evaluate(KillingDriver(), env, seeds)
        lost: list[EpisodeLost] = []
        pid = env.pid
        again = evaluate(KillingDriver(env, at=70), env, seeds, on_lost=lost.append)  # in the 2nd episode
        assert len(lost) == 1 and env.pid != pid and env.replacements == 1
        assert again == clean  # the lost episode was rerun from its seed
        direct = highway()
        assert clean == evaluate(KillingDriver(), direct, seeds)  # the worker changes nothing
    finally:
        env.close()


def test_an_error_inside_the_env_is_raised_with_its_traceback_and_the_worker_goes_on():
    env = supervised()
    try:
        env.reset(seed=0)
        with pytest.raises(EnvWorkerError, match=r"(?s)during step.*Traceback"):
            env.step("full throttle")  # not an action: a bug, not a lost simulator
        pid = env.pid
        env.step(np.zeros(2, dtype=np.float32))
        assert env.pid == pid and env.replacements == 0
    finally:
        env.close()


def test_a_worker_that_keeps_dying_gives_up_after_max_reconnects_with_a_clear_error():
    env = supervised(max_reconnects=1)
    try:
        env.reset(seed=0)
        os.kill(env.pid, signal.SIGKILL)
        with pytest.raises(EpisodeLost, match="died during step"):
            env.step(np.zeros(2, dtype=np.float32))
        os.kill(env.pid, signal.SIGKILL)  # again, before any call succeeded: the second in a row
        with pytest.raises(EnvFailed, match=r"failed 2 times in a row \(env.max_reconnects=1\)"):
            env.reset(seed=0)
    finally:
        env.close()


def test_an_env_that_cannot_be_built_fails_at_start_naming_the_cause():
    with pytest.raises(EnvFailed, match="could not be built in its worker: ValueError: npc_vehicles"):
        SupervisedEnv(functools.partial(HighwayDrivingEnv, HighwayEnvConfig(), -1), name="train",
                      step_timeout=5.0, start_timeout=60.0, max_reconnects=0, reconnect_delay=0.0)


class SuspendCounting(HighwayDrivingEnv):
    """Counts the ``suspend`` calls the supervisor sends (as CARLA's env gets them), in its info."""

    suspended = 0

    def suspend(self):
        SuspendCounting.suspended += 1

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, info | {"suspended": SuspendCounting.suspended}


def test_envs_sharing_a_simulator_take_turns_across_workers():
    turns = Turns()
    cfg = HighwayEnvConfig(image_height=24, image_width=24)
    envs = [SupervisedEnv(functools.partial(SuspendCounting, cfg, 0), name=name, step_timeout=10.0,
                          start_timeout=60.0, max_reconnects=0, reconnect_delay=0.0, turns=turns)
            for name in ("train", "eval")]
    try:
        train, evaluation = envs
        train.reset(seed=0)
        assert train.step(np.zeros(2, np.float32))[4]["suspended"] == 0
        evaluation.reset(seed=1)  # the train env's worker was told to suspend first
        assert train.step(np.zeros(2, np.float32))[4]["suspended"] == 1  # and the eval env's now
        assert evaluation.step(np.zeros(2, np.float32))[4]["suspended"] == 1
        assert train.step(np.zeros(2, np.float32))[4]["suspended"] == 2
    finally:
        for env in envs:
            env.close()


def test_worker_settings_are_checked():
    with pytest.raises(ConfigError, match="env.step_timeout"):
        HighwayEnvConfig(step_timeout=0.0)
    with pytest.raises(ConfigError, match="env.max_reconnects"):
        HighwayEnvConfig(max_reconnects=-1)


def wait_for(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 300.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text()) if path.exists() else None
        if m:
            return m
        assert proc.poll() is None, f"the run ended before {pattern!r}: {proc.communicate()}"
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path} after {timeout} s")


@pytest.mark.slow
def test_a_training_run_survives_its_env_worker_killed_and_hung(tmp_path):
    """SIGKILL the train worker mid-episode, then SIGSTOP its replacement: after env.step_timeout it is
    replaced too. The run finishes, with 2 reconnects in results.json."""
    run = tmp_path / "run"
    proc = subprocess.Popen(TRAIN + [f"hydra.run.dir={run}", "env.step_timeout=3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / "train.log"
    pid = int(wait_for(log, r"train pid (\d+)", proc)[1])
    wait_for(log, r"train \| step=150 ", proc)  # the first episode is over: the second is under way
    time.sleep(0.3)  # past the reset (~10 ms): the kill lands on a step
    os.kill(pid, signal.SIGKILL)
    new = int(wait_for(log, rf"worker {pid} replaced by (\d+)", proc)[1])
    wait_for(log, r"train \| step=\d+  episode=1 ", proc)
    time.sleep(0.3)  # past the next reset (~10 ms): the stop lands on a step of the third episode
    os.kill(new, signal.SIGSTOP)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["reconnects"] == 2 and (run / "DONE").exists()
    text = log.read_text()
    assert "died during step" in text and "no answer to step within env.step_timeout=3 s" in text


@pytest.mark.slow
def test_too_many_failures_stop_the_run_with_a_checkpoint_and_a_relaunch_resumes(tmp_path):
    run = tmp_path / "run"
    command = TRAIN + [f"hydra.run.dir={run}", "env.max_reconnects=0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = int(wait_for(run / "train.log", r"train pid (\d+)", proc)[1])
    wait_for(run / "train.log", r"train \| step=300 ", proc)  # after the first checkpoint (step 300)
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    assert "env.max_reconnects=0" in err and "relaunch the same command to resume" in err
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "failed" and (run / "checkpoint.pt").exists() and not (run / "DONE").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["step"] == 600 and (run / "DONE").exists()
    assert "resum" in (run / "train.log").read_text()


@pytest.mark.slow
def test_a_run_in_worker_processes_equals_the_in_process_run(tmp_path):
    base = [sys.executable, "-m", "av_td3.train", "+experiment=smoke", "env=gym", "trainer.total_steps=300",
            "trainer.progress_bar=false",
            "torch_threads=1"]
    for name, extra in (("inproc", []), ("worker", ["env.worker=true"])):
        subprocess.run(base + extra + [f"hydra.run.dir={tmp_path / name}"], check=True, capture_output=True,
                       timeout=600)
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("inproc", "worker"))
    assert a["final_eval"] == b["final_eval"] and a["evals"] == b["evals"]
    assert (tmp_path / "inproc" / "train.csv").read_text() == (tmp_path / "worker" / "train.csv").read_text()


def test_updates_while_stepping_are_the_sequential_updates_one_transition_early(compose, tmp_path):
    """trainer.update_while_stepping: each update runs while the train worker is stepping, and samples the
    replay as the sequential loop's same update does, less the transition that step is producing."""
    from av_td3.config import validate
    from av_td3.trainer import Trainer

    seen = {}
    for name, extra in (("sequential", []), ("overlapped", ["env.worker=true", "trainer.update_while_stepping=true"])):
        raw = compose(["+experiment=smoke", "trainer.total_steps=300", "trainer.learning_starts=100",
                       "trainer.eval_every=0", "trainer.final_eval_episodes=1", "env.max_episode_steps=100",
                       "trainer.progress_bar=false", "torch_threads=1", *extra])
        trainer = Trainer(raw, validate(raw), tmp_path / name)
        calls, sample = [], trainer.replay.sample

        def spy(*args, _sample=sample, _calls=calls, _trainer=trainer, **kwargs):
            _calls.append((len(_trainer.replay), bool(_trainer.pool._sent)))  # stored; a worker stepping
            return _sample(*args, **kwargs)

        trainer.replay.sample = spy
        trainer.run()
        seen[name] = calls
    sequential, overlapped = seen["sequential"], seen["overlapped"]
    assert len(overlapped) == len(sequential) > 50
    assert all(stepping for _, stepping in overlapped) and not any(stepping for _, stepping in sequential)
    assert [n for n, _ in overlapped] == [n - 1 for n, _ in sequential]


def test_updating_while_stepping_needs_the_env_in_a_worker(compose):
    from av_td3.config import validate

    with pytest.raises(ConfigError, match="trainer.update_while_stepping: needs env.worker=true"):
        validate(compose(["+experiment=smoke", "trainer.update_while_stepping=true"]))
