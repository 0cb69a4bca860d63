"""What a user sees on the console: one line for a missing CARLA server, each evaluation line once."""

import os
import socket
import subprocess
import sys
import time

import pytest

TRAIN = [sys.executable, "-m", "av_td3.train"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_missing_carla_server_is_one_line_with_the_port_and_how_to_start_one(tmp_path):
    port = free_port()
    env = os.environ | {"CARLA_HOST": "127.0.0.1", "CARLA_PORT": str(port)}
    t0 = time.monotonic()
    r = subprocess.run(TRAIN + ["env=carla", "+experiment=smoke", f"hydra.run.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    took = time.monotonic() - t0
    assert r.returncode != 0 and took < 20
    console = r.stdout + r.stderr
    assert "Traceback" not in console
    assert f"no CARLA server at 127.0.0.1:{port}" in r.stderr and f"-carla-rpc-port={port}" in r.stderr
    assert console.count("no CARLA server") == 1  # once, not once per logger or per process
    assert "Traceback" in (tmp_path / "run" / "error.txt").read_text()  # kept with the run


@pytest.mark.slow
def test_each_evaluation_line_appears_once_with_the_progress_bar(tmp_path):
    r = subprocess.run(TRAIN + ["+experiment=smoke", f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    console = r.stdout + r.stderr
    for step in (300, 600):
        assert console.count(f"eval | step={step} ") == 1, console[-3000:]
