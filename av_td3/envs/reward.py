"""The one reward every driving env uses (SPEC's five components), from plain numbers only.

``compute_reward(q, cfg)`` returns ``(total, components)``. The components are UNWEIGHTED and
``total = sum(cfg.weights.<name> * components[<name>])``; the trainer logs the components as
``rewards/<name>_component``. Signs follow ``contract.py`` (lateral deviation and heading error are
positive to the right). With ``v = q.speed``, ``he = q.heading_error``, ``stopped = |v| < stopped_speed``:

efficiency    u = v cos(he) / target (speed along the lane), target = min(target_speed, q.speed_limit)
              (the route's limit when route_speed_deceleration is set; inf otherwise);
              clip(u, -1, 1) up to the target, then 1 - overspeed_slope (u - 1) (faster than the target
              scores less; the reference's slope 1 gives 2 - u), clipped to [-1, 1]. So the target speed
              is where efficiency peaks at 1.
lane_keeping  0 when stopped; -1 on a lane invasion; otherwise
              (1 - blend) * min(max(v, 0) / lane_keeping_speed, 1), with
              blend = w * min(|lat| / (lane_width / 2), 1) + (1 - w) * min(|he| / heading_scale, 1),
              w = lane_keeping_lateral_weight: 1 on the centre line, heading along it, at speed.
comfort       0 when stopped; otherwise -x / (1 + x) with x = |longitudinal jerk| / jerk_scale
              (-0.5 at jerk_scale, tending to -1; bounded, never flat).
safety        the sum of: on collision, collision_penalty_low / _mid / _high for |v| below
              collision_speed_low / below collision_speed_high / above; off_road_penalty when off road;
              lane_invasion_penalty on a lane invasion; marking_overlap_penalty per metre of the
              footprint past the lane's edge (q.marking_overlap, every step it is over a marking);
              wrong way (|he| > wrong_way_angle): wrong_way_penalty * (|he| - wrong_way_angle) /
              (pi - wrong_way_angle); standstill_penalty
              when stopped farther than standstill_distance from the goal; and for an obstacle ahead
              closer than proximity_distance d_p: proximity_penalty * (1 - d / d_p), plus
              ttc_penalty * (1 - ttc / ttc_threshold) when its time to collision is below ttc_threshold.
progress      progress_per_meter * q.progress (route metres gained this step, negative backwards),
              plus goal_bonus on the step the route is completed (q.route_completed).

Penalty constants are negative numbers in the config; every constant is a ``RewardConfig`` field.
"""

from __future__ import annotations

import math

from av_td3.config.env import RewardConfig
from av_td3.envs.contract import StepQuantities

COMPONENTS = ("efficiency", "lane_keeping", "comfort", "safety", "progress")


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def efficiency(q: StepQuantities, cfg: RewardConfig) -> float:
    u = q.speed * math.cos(q.heading_error) / min(cfg.target_speed, q.speed_limit)
    return _clip(u if u <= 1.0 else 1.0 - cfg.overspeed_slope * (u - 1.0), -1.0, 1.0)


def lane_keeping(q: StepQuantities, cfg: RewardConfig) -> float:
    if abs(q.speed) < cfg.stopped_speed:
        return 0.0
    if q.lane_invasion:
        return -1.0
    w = cfg.lane_keeping_lateral_weight
    lateral = min(abs(q.lateral_deviation) / (cfg.lane_width / 2), 1.0)
    heading = min(abs(q.heading_error) / cfg.lane_keeping_heading_scale, 1.0)
    blend = w * lateral + (1.0 - w) * heading
    # Scaled with speed: crawling along the centre line must not pay as much as driving it.
    return (1.0 - blend) * min(max(q.speed, 0.0) / cfg.lane_keeping_speed, 1.0)


def comfort(q: StepQuantities, cfg: RewardConfig) -> float:
    if abs(q.speed) < cfg.stopped_speed:
        return 0.0
    x = abs(q.longitudinal_jerk) / cfg.jerk_scale
    return -x / (1.0 + x)


def safety(q: StepQuantities, cfg: RewardConfig) -> float:
    total = 0.0
    if q.collision:
        v = abs(q.speed)
        total += (cfg.collision_penalty_low if v < cfg.collision_speed_low
                  else cfg.collision_penalty_mid if v < cfg.collision_speed_high
                  else cfg.collision_penalty_high)
    if q.off_road:
        total += cfg.off_road_penalty
    if q.lane_invasion:
        total += cfg.lane_invasion_penalty
    total += cfg.marking_overlap_penalty * q.marking_overlap
    he = abs(q.heading_error)
    if he > cfg.wrong_way_angle:
        beyond = (he - cfg.wrong_way_angle) / (math.pi - cfg.wrong_way_angle)
        total += cfg.wrong_way_penalty * min(beyond, 1.0)
    if abs(q.speed) < cfg.stopped_speed and q.distance_to_goal > cfg.standstill_distance:
        total += cfg.standstill_penalty
    if q.obstacle_distance < cfg.proximity_distance:
        total += cfg.proximity_penalty * (1.0 - max(q.obstacle_distance, 0.0) / cfg.proximity_distance)
        if q.time_to_collision < cfg.ttc_threshold:
            total += cfg.ttc_penalty * (1.0 - max(q.time_to_collision, 0.0) / cfg.ttc_threshold)
    return total


def progress(q: StepQuantities, cfg: RewardConfig) -> float:
    return cfg.progress_per_meter * q.progress + (cfg.goal_bonus if q.route_completed else 0.0)


def compute_reward(q: StepQuantities, cfg: RewardConfig) -> tuple[float, dict[str, float]]:
    """(weighted total, unweighted components); total = sum(weight * component)."""
    components = {name: float(fn(q, cfg)) for name, fn in zip(
        COMPONENTS, (efficiency, lane_keeping, comfort, safety, progress), strict=True)}
    total = sum(getattr(cfg.weights, name) * value for name, value in components.items())
    return float(total), components
