"""The package as a user installs it: a wheel built from the repo carries conf/ and experiments/, and
its av-td3-train composes and trains from them (no source checkout on the path)."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_configs_and_runs_a_smoke_step(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("av_td3-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("av_td3/conf/config.yaml", "av_td3/conf/experiment/learn_to_drive.yaml",
                   "av_td3/conf/levers/all.yaml", "av_td3/conf/size/env/smoke_highway.yaml",
                   "av_td3/envs/carla/town01_route.csv"):
        assert needed in names, needed
    # Installed on its own (the dependencies come from this environment), ahead of the checkout.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import av_td3; print(av_td3.config_dir())"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(site)), where
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "av_td3.train", "+experiment=smoke", "trainer.total_steps=250",
                        "trainer.eval_every=0", "trainer.progress_bar=false", f"hydra.run.dir={run}"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "results.json").read_text())["status"] == "finished"
