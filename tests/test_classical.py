"""The classical controller (PID speed + Pure Pursuit): closed-form steering, the PID, a closed loop on
SPEC's route shape with a kinematic bicycle, and real runs in the embedded simulator."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from av_td3.agents.classical import ClassicalAgent, lookahead_point
from av_td3.agents.spec import AgentSpec
from av_td3.config import ClassicalConfig, ClippingConfig
from av_td3.envs.contract import MAX_STEER_RAD, N_WAYPOINTS, WAYPOINT_SPACING, build_vector, split_action
from av_td3.envs.route import Route, wrap_angle

CFG = ClassicalConfig()
DT = 0.05  # s per action: the contract's 20 Hz (AgentSpec.step_seconds' default)


def make_agent(**over) -> ClassicalAgent:
    spec = AgentSpec(image_shape=(4, 36, 36), vector_size=53, action_dim=2, device=torch.device("cpu"),
                     clipping=ClippingConfig())
    hp = {k: getattr(CFG, k) for k in CFG.__dataclass_fields__ if k != "_target_"} | over
    return ClassicalAgent(spec, **hp)


def obs_of(speed: float, waypoints: np.ndarray) -> dict:
    return {"image": np.zeros((4, 36, 36), np.uint8), "vector": build_vector(speed, 0.0, 0.0, waypoints)}


def arc(radius: float, right: bool = True) -> np.ndarray:
    """The 25 waypoints, 2 m apart along a circle tangent to the vehicle's heading at the origin."""
    s = WAYPOINT_SPACING * np.arange(1, N_WAYPOINTS + 1)
    th = s / radius
    y = radius * (1 - np.cos(th))
    return np.stack([radius * np.sin(th), y if right else -y], 1)


def test_straight_route_steers_straight():
    wps = np.stack([WAYPOINT_SPACING * np.arange(1, 26), np.zeros(25)], 1)
    assert make_agent().act(obs_of(5.0, wps))[0] == pytest.approx(0.0)


@pytest.mark.parametrize("radius", [15.0, 20.0, 60.0])
@pytest.mark.parametrize("right", [True, False])
def test_pure_pursuit_on_a_circle_steers_its_curvature(radius, right):
    # Any point of a circle through the vehicle, tangent to its heading, gives curvature 1 / R, so the
    # bicycle's steering angle is atan(L / R) whatever the look-ahead (up to the look-ahead point lying
    # on a 2 m chord of the circle rather than on the circle).
    agent = make_agent()
    steer = agent.act(obs_of(8.0, arc(radius, right)))[0]
    expected = math.atan(CFG.wheelbase / radius) / MAX_STEER_RAD
    assert steer == pytest.approx(expected if right else -expected, rel=5e-3)


def test_lookahead_point_is_on_the_circle_of_the_lookahead_distance():
    p = lookahead_point(arc(20.0), 6.0)
    assert np.hypot(*p) == pytest.approx(6.0)
    near_goal = np.tile([[1.0, 0.5]], (25, 1))  # past the goal the waypoints repeat it
    assert np.allclose(lookahead_point(near_goal, 6.0), [1.0, 0.5])


def test_route_to_the_left_steers_left():
    wps = np.stack([WAYPOINT_SPACING * np.arange(1, 26), np.full(25, -1.0)], 1)  # centre line 1 m left
    assert make_agent().act(obs_of(5.0, wps))[0] < 0


def test_pid_throttles_below_and_brakes_above_the_target_and_resets():
    agent = make_agent()
    straight = np.stack([WAYPOINT_SPACING * np.arange(1, 26), np.zeros(25)], 1)
    assert agent.act(obs_of(0.0, straight))[1] == 1.0
    agent.reset()
    assert agent.act(obs_of(20.0, straight))[1] == -1.0
    agent.reset()
    for _ in range(200):  # saturated below target: the integral must not wind up
        agent.throttle_brake(0.0)
    assert agent.integral <= 2 * CFG.target_speed * DT
    agent.reset()
    assert agent.integral == 0.0 and agent.prev_speed is None


def test_closed_loop_on_spec_route_with_a_kinematic_bicycle():
    """200 m straight, a 90-degree right turn of radius 20 m, 32 m to the goal (SPEC's ~264 m), driven
    by a kinematic bicycle at 20 Hz: the controller reaches the goal near the target speed, in lane."""
    r, dt, L = 20.0, DT, CFG.wheelbase
    th = np.linspace(0, math.pi / 2, 40)
    xy = np.vstack([np.stack([np.linspace(0, 200, 101), np.zeros(101)], 1),
                    np.stack([200 + r * np.sin(th), r * (1 - np.cos(th))], 1),
                    [[220.0, 52.0]]])
    route = Route(xy)
    agent = make_agent()
    pos, yaw, v = np.array([0.0, 0.8]), 0.05, 0.0  # start 0.8 m right of the centre, slightly askew
    max_dev, speeds = 0.0, []
    for _ in range(1000):
        proj = route.project(pos)
        if np.linalg.norm(pos - route.goal) < 3.0:
            break
        wps = route.waypoints_ahead(pos, yaw, proj.s)
        obs = {"vector": build_vector(v, proj.lateral, wrap_angle(yaw - proj.route_yaw), wps)}
        steer, throttle, brake = split_action(agent.act(obs))
        v = max(0.0, v + (4.0 * throttle - 8.0 * brake) * dt)
        yaw += v / L * math.tan(steer * MAX_STEER_RAD) * dt
        pos = pos + v * dt * np.array([math.cos(yaw), math.sin(yaw)])
        max_dev = max(max_dev, abs(proj.lateral)) if proj.s > 20 else max_dev
        speeds.append(v)
    assert np.linalg.norm(pos - route.goal) < 3.0, "did not reach the goal"
    assert max_dev < 1.0  # after settling from the initial offset, including the turn
    assert np.mean(speeds[-300:]) == pytest.approx(CFG.target_speed, abs=0.5)


# --- the embedded simulator (highway-env) ---------------------------------------------------------------
SMALL = ["env.image_height=36", "env.image_width=36"]
METRIC_KEYS = {"mean_reward", "success_rate", "encounter_rate", "avg_collisions", "avg_lane_invasions", "avg_episode_length",
               "collisions_per_km", "lane_invasions_per_km", "ttc_mean_s", "ttc_min_s", "avg_speed_kmh",
               "completion_time_s", "jerk_mean_mps3", "jerk_max_mps3", "lat_accel_mean_mps2",
               "lat_accel_max_mps2", "avg_distance_m", "crash_rate", "off_road_rate", "timeout_rate",
               "lateral_offset_mean_m", "lateral_offset_rms_m", "over_marking_fraction"}


@pytest.mark.slow
def test_completes_the_embedded_route_in_light_traffic():
    from av_td3.config import HighwayEnvConfig
    from av_td3.envs.highway import HighwayDrivingEnv
    from av_td3.evaluation import evaluate

    env = HighwayDrivingEnv(HighwayEnvConfig(image_height=36, image_width=36), npc_vehicles=20, role="eval")
    try:
        summary = evaluate(make_agent(), env, seeds=list(range(6)))
    finally:
        env.close()
    assert summary["success_rate"] > 0.5, summary  # "most": it does not see the traffic
    assert 0.5 * CFG.target_speed * 3.6 < summary["avg_speed_kmh"] < 1.1 * CFG.target_speed * 3.6
    assert summary["completion_time_s"] > 264 / CFG.target_speed * 0.9  # simulated seconds


def test_classical_run_writes_its_metrics_to_results_json(tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "av_td3.train", "agent=classical", "scenario=light", *SMALL,
                        "trainer.eval_episodes=1", "trainer.progress_bar=false", "device=cpu",
                        f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "SDL_VIDEODRIVER": "dummy"})
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["updates"] == 0 and results["step"] == 0
    assert set(results["final_eval"]) == METRIC_KEYS
    assert results["final_eval"]["avg_distance_m"] > 0


def test_the_controller_s_timestep_follows_the_action_repeat(compose):
    from av_td3.agents.build import build_agent
    from av_td3.config import ConfigError, validate
    from av_td3.envs.highway import HighwayDrivingEnv

    for repeat in (1, 2, 3):
        raw = compose(["agent=classical", f"trainer.action_repeat={repeat}"])
        cfg = validate(raw)
        env = HighwayDrivingEnv(cfg.env, 0)
        agent = build_agent(raw, cfg, env.observation_space, env.action_space, torch.device("cpu"))
        assert agent.dt == pytest.approx(0.05 * repeat)  # 20 Hz frames, held `repeat` frames each
    with pytest.raises(ConfigError, match=r"agent.dt: \(0.05 s\) is not the time between the controller's actions"):
        validate(compose(["agent=classical", "trainer.action_repeat=2", "agent.dt=0.05"]))


def following_agent():
    spec = AgentSpec(image_shape=None, vector_size=55, action_dim=2, device=torch.device("cpu"),
                     clipping=ClippingConfig(), obstacle_range=20.0)
    hp = {k: getattr(CFG, k) for k in CFG.__dataclass_fields__ if k != "_target_"} | {"car_following": True}
    return ClassicalAgent(spec, **hp)


def test_car_following_brakes_behind_a_slower_car_and_leaves_the_pid_alone_otherwise():
    straight = np.stack([2.0 * np.arange(1, 26), np.zeros(25)], 1)
    base = obs_of(8.0, straight)["vector"]

    def pedal(agent, gap, closing):
        agent.reset()
        vector = np.concatenate([base, [gap / 20.0, closing / 30.0]]).astype(np.float32)
        return agent.act({"vector": vector})[1]

    follower, blind = following_agent(), make_agent()
    free = pedal(follower, 20.0, 0.0)  # nothing within range: the PID alone
    blind.reset()
    assert free == blind.act({"vector": base})[1]
    assert pedal(follower, 6.0, 4.0) == -1.0  # 6 m behind a car 4 m/s slower: full brake
    assert -1.0 < pedal(follower, 15.0, 1.0) < free  # farther and slower closing: a gentler pedal
    gaps = [pedal(follower, g, 2.0) for g in (5.0, 10.0, 15.0, 19.0)]
    assert gaps == sorted(gaps)  # the nearer, the harder it brakes


def test_car_following_needs_the_gap_in_the_vector(compose):
    from av_td3.config import ConfigError, validate

    with pytest.raises(ConfigError, match="agent.car_following: .*env.observe_obstacle=true"):
        validate(compose(["agent=classical", "agent.car_following=true"]))
    validate(compose(["agent=classical", "agent.car_following=true", "env.observe_obstacle=true"]))
