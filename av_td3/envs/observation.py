"""The observation vector both driving envs hand the policy, as env.vector asks (contract.py has the
layouts): reference (SPEC's 53 floats and the observe_* features), minimal (what a CARLA leaderboard
agent receives) or none."""

from __future__ import annotations

import numpy as np

from av_td3.envs.contract import StepQuantities, build_vector, extra_features, minimal_vector
from av_td3.envs.route import Projection, Route

EMPTY = np.zeros(0, dtype=np.float32)


def observation_vector(cfg, route: Route, q: StepQuantities, proj: Projection, position: np.ndarray,
                       yaw: float, previous_action: np.ndarray) -> np.ndarray:
    """``cfg``: the driving env config; ``previous_action``: the [steer, throttle_brake] the ego drove
    this step with (zeros after a reset)."""
    if cfg.vector == "none":
        return EMPTY
    if cfg.vector == "minimal":
        command, distance = route.command(proj.s, cfg.command_distance)
        return minimal_vector(q.speed, q.longitudinal_acceleration, previous_action, command, distance,
                              cfg.command_distance)
    waypoints = route.waypoints_ahead(position, yaw, proj.s)
    return build_vector(q.speed, q.lateral_deviation, q.heading_error, waypoints, extra_features(q, cfg))
