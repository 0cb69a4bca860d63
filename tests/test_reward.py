"""The shared reward on hand-made StepQuantities with known answers (no simulator)."""

import math
from dataclasses import replace

import pytest

from av_td3.config.env import RewardConfig, RewardWeights
from av_td3.envs.contract import StepQuantities
from av_td3.envs.reward import COMPONENTS, compute_reward

CFG = RewardConfig()
TARGET = CFG.target_speed  # 8.33 m/s
STEP = TARGET * 0.05  # m driven in one 20 Hz step at the target speed


def quantities(**changes) -> StepQuantities:
    """On the lane centre, heading along it, at the target speed, nothing around, far from the goal."""
    q = StepQuantities(speed=TARGET, lateral_deviation=0.0, heading_error=0.0, longitudinal_acceleration=0.0,
                       lateral_acceleration=0.0, longitudinal_jerk=0.0, collision=False, lane_invasion=False,
                       off_road=False, progress=STEP, distance_to_goal=100.0, route_completed=False,
                       obstacle_distance=math.inf, time_to_collision=math.inf, dt=0.05,
                       distance_travelled=STEP)
    return replace(q, **changes)


def components(cfg: RewardConfig = CFG, **changes) -> dict[str, float]:
    return compute_reward(quantities(**changes), cfg)[1]


def test_perfect_lane_centre_at_target_speed():
    total, c = compute_reward(quantities(), CFG)
    assert c == pytest.approx({"efficiency": 1.0, "lane_keeping": 1.0, "comfort": 0.0, "safety": 0.0,
                               "progress": 0.5 * STEP}, abs=1e-12)
    assert total == pytest.approx(2.0 * 1.0 + 2.0 * 1.0 + 3.0 * 0.5 * STEP, abs=1e-12)
    assert tuple(c) == COMPONENTS


def test_stopped_vehicle_scores_only_the_standstill_penalty():
    c = components(speed=0.0, progress=0.0, longitudinal_jerk=40.0, lateral_deviation=1.0, heading_error=0.4)
    assert c == {"efficiency": 0.0, "lane_keeping": 0.0, "comfort": 0.0, "safety": -0.1, "progress": 0.0}
    # Standing still at the goal is fine.
    assert components(speed=0.0, progress=0.0, distance_to_goal=2.0)["safety"] == 0.0


def test_efficiency_is_speed_along_the_lane_relative_to_target_peaking_at_it():
    assert components(speed=TARGET / 2)["efficiency"] == pytest.approx(0.5)
    assert components(speed=1.5 * TARGET)["efficiency"] == pytest.approx(0.5)  # 2 - 1.5
    assert components(speed=3.0 * TARGET)["efficiency"] == -1.0  # clipped
    assert components(heading_error=math.pi / 3)["efficiency"] == pytest.approx(0.5)  # cos 60 deg
    assert components(speed=-2.0 * TARGET)["efficiency"] == -1.0


def test_efficiency_targets_the_route_speed_limit_where_it_is_lower():
    assert components(speed=TARGET / 2, speed_limit=TARGET / 2)["efficiency"] == pytest.approx(1.0)
    assert components(speed=TARGET, speed_limit=TARGET / 2)["efficiency"] == pytest.approx(0.0)  # 2 - 2
    assert components(speed=TARGET, speed_limit=2 * TARGET)["efficiency"] == pytest.approx(1.0)  # target caps


def test_lane_keeping_blends_lateral_and_heading_and_scales_with_speed():
    half_lane = CFG.lane_width / 2
    assert components(lateral_deviation=half_lane / 2)["lane_keeping"] == pytest.approx(0.75)
    assert components(lateral_deviation=-half_lane / 2)["lane_keeping"] == pytest.approx(0.75)
    assert components(lateral_deviation=3 * half_lane)["lane_keeping"] == pytest.approx(0.5)  # capped term
    assert components(heading_error=CFG.lane_keeping_heading_scale / 2)["lane_keeping"] == pytest.approx(0.75)
    assert components(speed=CFG.lane_keeping_speed / 2)["lane_keeping"] == pytest.approx(0.5)
    both = components(lateral_deviation=half_lane, heading_error=-CFG.lane_keeping_heading_scale)
    assert both["lane_keeping"] == pytest.approx(0.0)


def test_lane_invasion():
    c = components(lane_invasion=True)
    assert c["lane_keeping"] == -1.0
    assert c["safety"] == -10.0


def test_marking_overlap_penalty_is_paid_per_step_and_metre():
    assert components(marking_overlap=0.4)["safety"] == 0.0  # the reference pays the crossing only
    cfg = replace(CFG, marking_overlap_penalty=-5.0)
    assert components(cfg, marking_overlap=0.4)["safety"] == pytest.approx(-2.0)
    assert components(cfg, marking_overlap=0.4, lane_invasion=True)["safety"] == pytest.approx(-12.0)
    assert components(cfg)["safety"] == 0.0


def test_comfort_penalty_grows_with_jerk():
    assert components(longitudinal_jerk=5.0)["comfort"] == pytest.approx(-0.5)
    assert components(longitudinal_jerk=-15.0)["comfort"] == pytest.approx(-0.75)
    assert components(longitudinal_jerk=0.0)["comfort"] == 0.0


@pytest.mark.parametrize("speed, penalty", [(1.0, -5.0), (2.78, -25.0), (5.0, -25.0), (8.33, -100.0),
                                            (12.0, -100.0), (-1.0, -5.0)])
def test_collision_penalty_graded_by_speed(speed, penalty):
    assert components(collision=True, speed=speed)["safety"] == penalty


def test_off_road():
    c = components(off_road=True, lateral_deviation=2.6)
    assert c["safety"] == -20.0


def test_wrong_way_up_to_minus_five():
    cfg = replace(CFG, wrong_way_angle=math.pi / 2)
    assert components(cfg, heading_error=math.pi)["safety"] == pytest.approx(-5.0)
    assert components(cfg, heading_error=-0.75 * math.pi)["safety"] == pytest.approx(-2.5)
    assert components(cfg, heading_error=0.49 * math.pi)["safety"] == 0.0
    assert components(heading_error=math.pi)["efficiency"] == pytest.approx(-1.0)


def test_proximity_and_time_to_collision():
    assert components(obstacle_distance=5.0)["safety"] == pytest.approx(-0.5)
    assert components(obstacle_distance=5.0, time_to_collision=1.5)["safety"] == pytest.approx(-0.5 - 1.0)
    assert components(obstacle_distance=0.0, time_to_collision=0.0)["safety"] == pytest.approx(-3.0)
    assert components(obstacle_distance=15.0, time_to_collision=1.0)["safety"] == 0.0  # beyond 10 m


def test_progress_and_the_goal_bonus_on_the_goal_step_only():
    assert components(progress=2.0)["progress"] == pytest.approx(1.0)
    assert components(progress=-1.0)["progress"] == pytest.approx(-0.5)
    assert components(route_completed=True)["progress"] == pytest.approx(0.5 * STEP + 100.0)
    assert components(route_completed=False)["progress"] == pytest.approx(0.5 * STEP)


def test_total_is_the_weighted_sum_of_the_components():
    q = quantities(speed=5.0, lateral_deviation=0.4, heading_error=-0.1, longitudinal_jerk=3.0,
                   obstacle_distance=6.0, time_to_collision=2.0, lane_invasion=True, progress=0.25)
    _, c = compute_reward(q, CFG)
    weights = RewardWeights(efficiency=0.5, lane_keeping=1.5, comfort=4.0, safety=0.25, progress=2.0)
    total, c2 = compute_reward(q, replace(CFG, weights=weights))
    assert c2 == c  # components are unweighted
    assert total == pytest.approx(sum(getattr(weights, k) * v for k, v in c.items()), abs=1e-12)
    only_safety = RewardWeights(efficiency=0.0, lane_keeping=0.0, comfort=0.0, safety=1.0, progress=0.0)
    assert compute_reward(q, replace(CFG, weights=only_safety))[0] == pytest.approx(c["safety"])


def test_overspeed_slope_sets_how_fast_efficiency_falls_above_the_target():
    fast = quantities(speed=1.5 * TARGET)
    steep = RewardConfig(overspeed_slope=3.0)
    assert components(speed=1.5 * TARGET)["efficiency"] == pytest.approx(0.5)  # the reference: 2 - u
    assert components(steep, speed=1.5 * TARGET)["efficiency"] == pytest.approx(-0.5)
    assert components(steep, speed=3 * TARGET)["efficiency"] == -1.0  # clipped
    assert components(steep)["efficiency"] == pytest.approx(1.0)
    assert components(steep, speed=4.0)["efficiency"] == pytest.approx(4.0 / TARGET)
