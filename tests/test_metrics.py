"""The evaluation metrics on hand-made trajectories with closed-form answers, and ``evaluate`` on a
scripted driving env."""

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from av_td3.envs.contract import StepQuantities
from av_td3.evaluation import evaluate
from av_td3.metrics import aggregate, episode_metrics, planar_kinematics

DT = 0.05


def step(**kw) -> dict:
    """One step's info: a car cruising at 10 m/s with nothing ahead, overridden by ``kw``."""
    q = dict(speed=10.0, lateral_deviation=0.0, heading_error=0.0, longitudinal_acceleration=0.0,
             lateral_acceleration=0.0, longitudinal_jerk=0.0, collision=False, lane_invasion=False,
             off_road=False, progress=10.0 * DT, distance_to_goal=100.0, route_completed=False,
             obstacle_distance=math.inf, time_to_collision=math.inf, dt=DT, distance_travelled=10.0 * DT)
    q.update(kw)
    if "speed" in kw and "distance_travelled" not in kw:
        q["distance_travelled"] = q["speed"] * q["dt"]
    return StepQuantities(**q).as_info()


def test_constant_speed_route_completed():
    n, v = 200, 12.5  # 10 s at 45 km/h = 125 m
    infos = [step(speed=v) for _ in range(n - 1)] + [step(speed=v, route_completed=True)]
    m = episode_metrics([1.0] * n, infos)
    assert m["return"] == pytest.approx(n) and m["length"] == n
    assert m["success"] == 1.0
    assert m["distance_m"] == pytest.approx(125.0)
    assert m["avg_speed_kmh"] == pytest.approx(45.0)
    assert m["completion_time_s"] == pytest.approx(10.0)  # simulated seconds: n * dt
    assert m["jerk_mean_mps3"] == m["jerk_max_mps3"] == 0.0
    assert m["lat_accel_mean_mps2"] == m["lat_accel_max_mps2"] == 0.0
    assert m["collisions_per_km"] == m["lane_invasions_per_km"] == 0.0
    assert math.isnan(m["ttc_mean_s"]) and math.isnan(m["ttc_min_s"])  # never an obstacle ahead


def test_lateral_offset_is_the_signed_mean_and_the_rms():
    infos = [step(speed=10.0, lateral_deviation=d) for d in (-0.6, -0.8, -0.7, 0.3)]
    m = episode_metrics([0.0] * 4, infos)
    assert m["lateral_offset_mean_m"] == pytest.approx(-0.45)  # left of the centre line: negative
    assert m["lateral_offset_rms_m"] == pytest.approx(math.sqrt((0.36 + 0.64 + 0.49 + 0.09) / 4))
    phase = aggregate([m, episode_metrics([0.0], [step(speed=10.0, lateral_deviation=0.25)])])
    assert phase["lateral_offset_mean_m"] == pytest.approx((-0.45 + 0.25) / 2)  # the mean over episodes


def test_time_over_a_marking_counts_frames_not_crossings():
    # One crossing, then riding the marking for two more frames: 1 invasion, 3 of 5 frames over it.
    infos = [step(), step(lane_invasion=True, marking_overlap=0.1), step(marking_overlap=0.3),
             step(marking_overlap=0.2), step()]
    m = episode_metrics([0.0] * 5, infos)
    assert m["lane_invasions"] == 1.0 and m["over_marking_fraction"] == pytest.approx(0.6)
    phase = aggregate([m, episode_metrics([0.0] * 2, [step(), step()])])
    assert phase["over_marking_fraction"] == pytest.approx(0.3)  # the mean over episodes


def test_unfinished_episode_has_no_completion_time():
    m = episode_metrics([0.0] * 3, [step() for _ in range(3)])
    assert m["success"] == 0.0 and math.isnan(m["completion_time_s"])


@pytest.mark.parametrize("jerk", [2.0, -3.0])
def test_constant_jerk_from_longitudinal_acceleration(jerk):
    # a(t) = 1 + j t; the env's own jerk field is deliberately wrong: jerk comes from the acceleration.
    n = 100
    infos = [step(longitudinal_acceleration=1.0 + jerk * k * DT, longitudinal_jerk=99.0,
                  lateral_acceleration=-0.5) for k in range(n)]
    m = episode_metrics([0.0] * n, infos)
    assert m["jerk_mean_mps3"] == pytest.approx(abs(jerk))
    assert m["jerk_max_mps3"] == pytest.approx(abs(jerk))
    assert m["lat_accel_mean_mps2"] == pytest.approx(0.5)  # |.|


def test_jerk_is_longitudinal_not_of_the_acceleration_magnitude():
    # Constant speed on a circle: |a| is constant (zero jerk of the magnitude too), but a swerve that
    # flips the lateral acceleration's sign must not count as longitudinal jerk either.
    infos = [step(lateral_acceleration=3.0 * (-1) ** k) for k in range(20)]
    m = episode_metrics([0.0] * 20, infos)
    assert m["jerk_max_mps3"] == 0.0 and m["lat_accel_max_mps2"] == pytest.approx(3.0)


def test_circle_of_known_radius_gives_v2_over_r():
    r, v, n = 20.0, 8.0, 400  # 20 s on a 20 m circle, turning right (y is to the right of x)
    theta = v / r * DT * np.arange(n + 1)
    xy = np.stack([r * np.sin(theta), r * (1 - np.cos(theta))], 1)
    k = planar_kinematics(xy, DT)
    assert np.allclose(k["speed"], v, rtol=1e-3)
    assert np.allclose(k["lateral_acceleration"][1:], v**2 / r, rtol=1e-3)  # + = towards the right
    assert np.allclose(k["longitudinal_acceleration"], 0.0, atol=1e-9)
    infos = [step(speed=float(k["speed"][i]), longitudinal_acceleration=float(k["longitudinal_acceleration"][i]),
                  lateral_acceleration=float(k["lateral_acceleration"][i])) for i in range(1, n)]
    m = episode_metrics([0.0] * len(infos), infos)
    assert m["lat_accel_mean_mps2"] == pytest.approx(v**2 / r, rel=1e-3)
    assert m["lat_accel_max_mps2"] == pytest.approx(v**2 / r, rel=1e-3)
    assert m["avg_speed_kmh"] == pytest.approx(v * 3.6, rel=1e-3)
    assert m["jerk_max_mps3"] == pytest.approx(0.0, abs=1e-6)


def test_planar_kinematics_constant_jerk_on_a_line():
    j, n = 1.5, 200
    t = DT * np.arange(n + 1)
    xy = np.stack([5.0 * t + j * t**3 / 6, np.zeros_like(t)], 1)
    k = planar_kinematics(xy, DT)
    assert np.allclose(k["longitudinal_jerk"][2:], j, rtol=1e-6)
    assert np.allclose(k["lateral_acceleration"], 0.0)


def test_collision_at_a_known_distance():
    # 250 m at 10 m/s, then a collision: 1 collision / 0.25 km; two lane invasions on the way.
    n = 500
    infos = [step(lane_invasion=k in (100, 300), collision=k == n - 1) for k in range(n)]
    m = episode_metrics([0.0] * n, infos)
    assert m["distance_m"] == pytest.approx(250.0)
    assert m["collisions"] == 1 and m["collisions_per_km"] == pytest.approx(4.0)
    assert m["lane_invasions"] == 2 and m["lane_invasions_per_km"] == pytest.approx(8.0)
    standing = episode_metrics([0.0], [step(speed=0.0, collision=True)])
    assert math.isnan(standing["collisions_per_km"])  # undefined over 0 km


def test_ttc_only_over_steps_with_an_obstacle_ahead():
    ttcs = [math.inf, 5.0, 4.0, 3.0, math.inf, 6.0]
    m = episode_metrics([0.0] * 6, [step(time_to_collision=t, obstacle_distance=10.0) for t in ttcs])
    assert m["ttc_mean_s"] == pytest.approx(4.5) and m["ttc_min_s"] == 3.0


def test_aggregate_a_phase():
    a = episode_metrics([1.0] * 200, [step() for _ in range(199)] + [step(route_completed=True)])  # 100 m
    b = episode_metrics([3.0] * 100, [step(time_to_collision=2.0) for _ in range(99)]
                        + [step(collision=True, time_to_collision=1.0)])  # 50 m, crash
    s = aggregate([a, b])
    assert s["mean_reward"] == pytest.approx(250.0) and s["avg_episode_length"] == 150.0
    assert s["success_rate"] == 0.5 and s["avg_collisions"] == 0.5 and s["avg_lane_invasions"] == 0.0
    assert s["collisions_per_km"] == pytest.approx(1 / 0.15)  # over the phase's 150 m, not per episode
    assert s["completion_time_s"] == pytest.approx(10.0)  # successful episodes only
    assert s["ttc_min_s"] == 1.0 and s["ttc_mean_s"] == pytest.approx((2.0 * 99 + 1.0) / 100)
    assert s["avg_speed_kmh"] == pytest.approx(36.0)
    assert a["encounter"] == 0.0 and b["encounter"] == 1.0 and s["encounter_rate"] == 0.5  # b met a slower car
    assert (s["crash_rate"], s["off_road_rate"], s["timeout_rate"]) == (0.5, 0.0, 0.0)
    # Plain Gymnasium episodes: return and length only.
    plain = aggregate([episode_metrics([1.0, 2.0], [{}, {}])])
    assert plain == {"mean_reward": 3.0, "avg_episode_length": 2.0}


def test_how_failed_episodes_ended():
    done = episode_metrics([1.0] * 3, [step(), step(collision=True), step(route_completed=True)])  # a bump
    crash = episode_metrics([1.0] * 2, [step(), step(collision=True, off_road=True)])
    off = episode_metrics([1.0] * 2, [step(), step(off_road=True, lateral_deviation=3.0)])
    timeout = episode_metrics([1.0] * 2, [step(), step()])
    s = aggregate([done, crash, off, timeout])
    assert s["success_rate"] == 0.25
    assert (s["crash_rate"], s["off_road_rate"], s["timeout_rate"]) == (0.25, 0.25, 0.25)


class ScriptedDrivingEnv(gym.Env):
    """Drives at the commanded speed (action[1] * 20 m/s) for ``n`` steps, then completes the route."""

    observation_space = spaces.Dict({"vector": spaces.Box(-np.inf, np.inf, (53,), np.float32)})
    action_space = spaces.Box(-1, 1, (2,), np.float32)

    def __init__(self, n: int = 40):
        self.n = n

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k = 0
        return {"vector": np.zeros(53, np.float32)}, {}

    def step(self, action):
        self.k += 1
        done = self.k == self.n
        info = step(speed=float(action[1]) * 20.0, route_completed=done)
        return {"vector": np.zeros(53, np.float32)}, 1.0, done, False, info


class CountingAgent:
    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1

    def act(self, obs):
        return np.array([0.0, 0.5], np.float32)


def test_evaluate_reports_the_suite_and_resets_the_agent():
    agent = CountingAgent()
    s = evaluate(agent, ScriptedDrivingEnv(), seeds=[1, 2, 3])
    assert agent.resets == 3
    for key in ("mean_reward", "success_rate", "avg_collisions", "avg_lane_invasions", "avg_episode_length",
                "collisions_per_km", "lane_invasions_per_km", "ttc_mean_s", "ttc_min_s", "avg_speed_kmh",
                "completion_time_s", "jerk_mean_mps3", "jerk_max_mps3", "lat_accel_mean_mps2",
                "lat_accel_max_mps2", "avg_distance_m"):
        assert key in s, key
    assert s["success_rate"] == 1.0 and s["avg_speed_kmh"] == pytest.approx(36.0)
    assert s["completion_time_s"] == pytest.approx(40 * DT) and s["mean_reward"] == 40.0
