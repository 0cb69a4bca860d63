"""A camera run on the route split, then `av-td3 evaluate` on it: per-route rows, evaluate.json, route
files from anywhere, and one-line exits for bad input."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from av_td3.envs.routes import route_points

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "av_td3.train"]
CLI = [sys.executable, "-m", "av_td3.cli"]
EVALUATE = CLI + ["evaluate"]


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory):
    """size=smoke with the dashcam, the minimal vector, training on the train split, evaluation on test."""
    tmp = tmp_path_factory.mktemp("camera")
    run = tmp / "run"
    r = subprocess.run(TRAIN + ["+experiment=smoke", "env.camera=dashcam", "env.vector=minimal", "env.routes=train",
                                "env.eval_routes=test", "trainer.total_steps=400", "trainer.eval_every=0",
                                "trainer.final_eval_episodes=4", "trainer.final_eval_splits=[train]",
                                "trainer.progress_bar=false", f"hydra.run.dir={run}"],
                       capture_output=True, text=True, timeout=600, cwd=tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def test_a_camera_run_on_the_train_split_evaluates_per_test_route(camera_run):
    results = json.loads((camera_run / "results.json").read_text())
    assert results["status"] == "finished"
    by_route = results["final_eval_by_route"]
    assert sorted(by_route) == sorted(["left_90_r20.csv", "right_90_r8.csv", "s_bend_r45.csv",
                                       "left_curve_r80_right_r10.csv"])
    assert all(s["avg_episode_length"] > 0 and "encounter_rate" in s for s in by_route.values())
    train = results["final_eval_by_split"]["train"]  # trainer.final_eval_splits: the routes it trained on
    assert sorted(train["by_route"]) == sorted(["right_90_r20.csv", "left_90_r9.csv", "s_bend_r30.csv",
                                                "right_curve_r60.csv"])  # 4 episodes: the split's first 4 routes
    assert train["overall"]["avg_episode_length"] > 0


def test_final_eval_splits_must_name_route_splits():
    from av_td3.config import ConfigError
    from av_td3.config.root import Config, TrainerConfig
    from av_td3.config.env import HighwayEnvConfig

    with pytest.raises(ConfigError, match="trainer.final_eval_splits"):
        Config(agent=None, env=HighwayEnvConfig(), trainer=TrainerConfig(final_eval_splits=["nope"]))


def test_evaluate_on_a_route_file_outside_the_package(camera_run, tmp_path):
    road = tmp_path / "my_road.csv"
    xy, speed = route_points([("S", 80), ("R", 15, 90), ("S", 60)])
    road.write_text("x,y,target_speed\n" + "".join(f"{x},{y},{v}\n" for (x, y), v in zip(xy, speed)))
    out = tmp_path / "out"
    r = subprocess.run(EVALUATE + [str(camera_run), "--route", str(road), "--episodes", "2", "--out", str(out),
                                   "--video"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "my_road.csv" in r.stdout and "success" in r.stdout
    result = json.loads((out / "evaluate.json").read_text())
    assert list(result["routes"]) == [str(road)] and result["episodes"] == 2
    assert result["overall"]["avg_episode_length"] > 0
    assert list((out / "videos").glob("evaluate_my_road.gif"))


def test_evaluate_on_the_test_routes_drives_the_final_evaluations_episodes(camera_run, tmp_path):
    """`av-td3 evaluate RUN --routes test --episodes N` drives the final evaluation's N episodes (its routes
    and seeds) with the final policy: the same figures, so a kept run can be counted again under other
    bounds on the episodes its results.json reports."""
    r = subprocess.run(EVALUATE + [str(camera_run), "--routes", "test", "--episodes", "4", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((tmp_path / "evaluate.json").read_text())["overall"]
    final = json.loads((camera_run / "results.json").read_text())["final_eval"]
    for key in ("mean_reward", "success_rate", "avg_episode_length", "lane_invasions_per_km"):
        assert again[key] == pytest.approx(final[key]), key


def test_evaluate_a_split_with_overrides(camera_run, tmp_path):
    r = subprocess.run(EVALUATE + [str(camera_run), "--routes", "train", "--episodes", "8", "--out", str(tmp_path),
                                   "--", "scenario.npc_vehicles=0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "evaluate.json").read_text())
    assert len(result["routes"]) == 8 and result["overrides"] == ["scenario.npc_vehicles=0"]
    assert result["overall"]["encounter_rate"] == 0.0  # no traffic, nothing met


def test_evaluate_with_the_camera_frozen(camera_run, tmp_path):
    """--freeze image: the policy sees the episode's first image throughout; its own json, not evaluate.json."""
    r = subprocess.run(EVALUATE + [str(camera_run), "--episodes", "2", "--freeze", "image", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "the image held at the episode's start" in r.stdout
    result = json.loads((tmp_path / "evaluate_frozen_image.json").read_text())
    assert result["frozen"] == "image" and result["overall"]["avg_episode_length"] > 0
    assert not (tmp_path / "evaluate.json").exists()


def test_evaluate_either_weights_of_a_run_that_averages_them(camera_run, tmp_path):
    """--weights: a run evaluated with agent.policy_average (its checkpoint has no average, so the average
    starts as the trained weights) drives the same episodes with either; each has its own json."""
    results = {}
    for weights in ("trained", "averaged"):
        r = subprocess.run(EVALUATE + [str(camera_run), "--episodes", "2", "--weights", weights, "--out",
                                       str(tmp_path), "--", "agent.policy_average=0.001"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        results[weights] = json.loads((tmp_path / f"evaluate_{weights}_weights.json").read_text())
        assert results[weights]["weights"] == weights
    assert results["trained"]["overall"] == results["averaged"]["overall"]
    r = subprocess.run(EVALUATE + [str(camera_run), "--episodes", "1", "--weights", "averaged", "--out",
                                   str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("av-td3 evaluate: --weights averaged: this agent keeps no averaged weights "
                                "(agent.policy_average is 0)")


def test_a_frozen_input_holds_the_reset_value_while_the_env_drives_on():
    import numpy as np

    from av_td3.config import HighwayEnvConfig
    from av_td3.envs.highway import HighwayDrivingEnv
    from av_td3.evaluation import FrozenInput

    cfg = HighwayEnvConfig(image_height=16, image_width=16, camera="dashcam")
    frozen, plain = FrozenInput(HighwayDrivingEnv(cfg, 0), "image"), HighwayDrivingEnv(cfg, 0)
    first, _ = frozen.reset(seed=0)
    plain.reset(seed=0)
    for _ in range(10):
        obs, *_ = frozen.step(np.array([0.0, 1.0], np.float32))
        seen, *_ = plain.step(np.array([0.0, 1.0], np.float32))
    assert np.array_equal(obs["image"], first["image"]) and not np.array_equal(seen["image"], first["image"])
    assert np.array_equal(obs["vector"], seen["vector"]) and not np.array_equal(obs["vector"], first["vector"])


@pytest.mark.parametrize("args, message", [
    (["/no/such/run"], "no run directory at /no/such/run"),
    (["RUN", "--route", "/no/such.csv"], "no such route file"),
    (["RUN", "--routes", "nope"], "--routes nope: the run's env.route_splits has train, test"),
    (["RUN", "--", "agent.gamma=7"], "config: agent.gamma"),
    (["RUN", "--", "env.image_height=48"], "the checkpoint does not fit the networks"),
    (["RUN", "--", "env.image_height=24"], "config: image (24, 36) is too small for the CNN"),
])
def test_evaluate_bad_input_exits_2_with_one_line(camera_run, args, message):
    r = subprocess.run(EVALUATE + [str(camera_run) if a == "RUN" else a for a in args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_evaluate_a_run_without_a_checkpoint_exits_2(camera_run, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(camera_run / ".hydra", bare / ".hydra")
    r = subprocess.run(EVALUATE + [str(bare)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "has no checkpoint.pt" in r.stderr and "Traceback" not in r.stderr


def test_a_kept_run_compares_as_the_run_with_its_train_split(camera_run, tmp_path):
    """`av-td3 keep` copies kilobytes (no checkpoint, no events); compare scores the kept folder from its
    results.json, final_train/<key> from the train routes' final evaluation."""
    kept = tmp_path / "kept" / "seed0"
    k = subprocess.run(CLI + ["keep", str(camera_run), str(kept)], capture_output=True, text=True, timeout=120)
    assert k.returncode == 0, k.stderr
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "eval.csv", "overrides.yaml", "results.json",
                                                      "train.csv"]
    results = json.loads((kept / "results.json").read_text())
    out = tmp_path / "cmp"
    for metric, expected in (("final_train/avg_episode_length",
                              results["final_eval_by_split"]["train"]["overall"]["avg_episode_length"]),
                             ("final/avg_episode_length", results["final_eval"]["avg_episode_length"])):
        c = subprocess.run(CLI + ["compare", str(kept.parent), "--metric", metric, "--out", str(out), "--no-plots"],
                           capture_output=True, text=True, timeout=120)
        assert c.returncode == 0, c.stdout + c.stderr
        runs = pd.read_csv(out / "runs.csv")
        assert list(runs["status"]) == ["finished"] and list(runs["seed"]) == [0]
        assert runs.loc[0, metric] == pytest.approx(expected)
        assert runs.loc[0, "score_source"] == "results.json"

    # Its evaluation curves come from the eval.csv it keeps, equal to the run's event files; validate has
    # nothing to check (no gradient logs) and says so without failing.
    from av_td3.analysis.runs import load_run, read_scalars

    tag = "eval/mean_reward"
    original, from_table = read_scalars(load_run(camera_run), [tag])[tag], read_scalars(load_run(kept), [tag])[tag]
    assert list(from_table.steps) == list(original.steps) and len(original.steps) >= 1
    assert from_table.values == pytest.approx(original.values)
    v = subprocess.run(CLI + ["validate", str(kept)], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0 and "=> SKIP" in v.stdout and "a kept run" in v.stdout, v.stdout + v.stderr

    again = subprocess.run(CLI + ["keep", str(camera_run), str(kept)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # keeping again refreshes the kept files
    elsewhere = tmp_path / "notes"
    elsewhere.mkdir()
    (elsewhere / "todo.txt").write_text("mine")
    for args, why in (([str(camera_run), str(elsewhere)], "is not a kept run"),
                      ([str(tmp_path / "nope"), str(tmp_path / "x")], "no run directory at"),
                      ([str(kept), str(tmp_path / "y")], "is not a run directory")):
        bad = subprocess.run(CLI + ["keep", *args], capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and why in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    assert (elsewhere / "todo.txt").read_text() == "mine"


def test_a_run_saved_before_the_outline_default_is_loaded_as_it_ran(camera_run, tmp_path):
    """A saved config without env.marking_geometry counted invasions on the straight-lane box: evaluate
    loads it with lane_frame (config/saved.py), and an override still wins."""
    import shutil

    from omegaconf import OmegaConf

    from av_td3.evaluate_run import load_run_config

    old = tmp_path / "old"
    shutil.copytree(camera_run / ".hydra", old / ".hydra")
    saved = OmegaConf.load(old / ".hydra" / "config.yaml")
    assert saved.env.marking_geometry == "outline"  # the default now
    del saved.env["marking_geometry"]
    OmegaConf.save(saved, old / ".hydra" / "config.yaml")
    assert load_run_config(old, [])[1].env.marking_geometry == "lane_frame"
    assert load_run_config(old, ["env.marking_geometry=outline"])[1].env.marking_geometry == "outline"
    assert load_run_config(camera_run, [])[1].env.marking_geometry == "outline"
