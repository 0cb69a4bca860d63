"""From simulator readings to the contract: the control an action means, and the per-step quantities.

Everything here works on plain numbers (read from a CARLA snapshot by the env), so it is tested
without a server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from av_td3.envs.carla.client import import_carla
from av_td3.envs.contract import StepQuantities, off_road, split_action
from av_td3.envs.route import Projection, Route, wrap_angle

if TYPE_CHECKING:
    from av_td3.config.env import CarlaEnvConfig


def to_vehicle_control(action: np.ndarray):
    """[steer, throttle_brake] -> carla.VehicleControl (steer = a0; throttle / brake via split_action)."""
    carla = import_carla()
    steer, throttle, brake = split_action(action)
    return carla.VehicleControl(throttle=throttle, steer=steer, brake=brake)


@dataclass(frozen=True)
class EgoState:
    """One frame of the ego vehicle, in CARLA's world frame, angles in radians."""

    x: float
    y: float
    yaw: float
    vx: float
    vy: float
    ax: float
    ay: float
    elapsed: float  # simulated seconds since the server started (snapshot timestamp)

    @classmethod
    def from_snapshot(cls, actor_snapshot, elapsed: float) -> EgoState:
        t = actor_snapshot.get_transform()
        v, a = actor_snapshot.get_velocity(), actor_snapshot.get_acceleration()
        return cls(t.location.x, t.location.y, math.radians(t.rotation.yaw), v.x, v.y, a.x, a.y, elapsed)

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y])

    @property
    def forward(self) -> np.ndarray:
        return np.array([math.cos(self.yaw), math.sin(self.yaw)])

    @property
    def right(self) -> np.ndarray:  # left-handed frame: right of x is +y
        return np.array([-math.sin(self.yaw), math.cos(self.yaw)])

    @property
    def speed(self) -> float:
        """Signed speed along the heading (negative when rolling backwards)."""
        return float(np.dot([self.vx, self.vy], self.forward))


@dataclass
class Tracker:
    """The previous step's values that differences need (progress, acceleration, jerk, dt)."""

    s: float
    speed: float
    longitudinal_acceleration: float
    elapsed: float

    @classmethod
    def start(cls, route: Route, ego: EgoState) -> Tracker:
        return cls(route.project(ego.position).s, ego.speed, 0.0, ego.elapsed)


def measure(route: Route, ego: EgoState, prev: Tracker, cfg: CarlaEnvConfig, *, collision: bool,
            lane_invasion: bool, obstacle_distance: float, obstacle_speed: float,
            half_size: tuple[float, float], bound_ends: bool = True) -> tuple[StepQuantities, Projection, Tracker]:
    """The step's StepQuantities (signs as in contract.py), the route projection, the next tracker.

    ``cfg``: the env config (its bounds, goal radius, lane width, marking geometry and tick);
    ``obstacle_speed`` is the obstacle's velocity along the ego heading (0 for a parked car);
    ``half_size``: the ego's bounding-box half length and half width (m), whose footprint
    ``marking_overlap`` measures against a lane ``cfg.reward.lane_width`` m wide, placed as
    ``cfg.marking_geometry`` says; off road past either bound (``contract.off_road``; the footprint bound
    where ``bound_ends``, ``contract.bound_draw``). The lane invasion is CARLA's sensor's."""
    dt = ego.elapsed - prev.elapsed
    if not dt > 0:  # the first step after a reconnect; a snapshot without a newer timestamp
        dt = cfg.fixed_delta_seconds
    proj = route.project(ego.position)
    speed = ego.speed
    long_acc = (speed - prev.speed) / dt  # differences of the speed: smoother than the physics readout
    jerk = (long_acc - prev.longitudinal_acceleration) / dt
    lat_acc = float(np.dot([ego.ax, ego.ay], ego.right))
    heading_error = wrap_angle(ego.yaw - proj.route_yaw)
    closing = speed - obstacle_speed
    ttc = obstacle_distance / closing if math.isfinite(obstacle_distance) and closing > 1e-3 else math.inf
    overlap = route.marking_overlap(cfg.marking_geometry, ego.position, ego.yaw, proj, *half_size,
                                    cfg.reward.lane_width)
    q = StepQuantities(
        speed=speed,
        lateral_deviation=proj.lateral,
        heading_error=heading_error,
        longitudinal_acceleration=long_acc,
        lateral_acceleration=lat_acc,
        longitudinal_jerk=jerk,
        collision=bool(collision),
        lane_invasion=bool(lane_invasion),
        off_road=off_road(proj.lateral, overlap, cfg.max_lateral_deviation, cfg.max_marking_overlap, bound_ends),
        progress=proj.s - prev.s,
        distance_to_goal=max(route.length - proj.s, 0.0),
        route_completed=bool(np.hypot(*(ego.position - route.goal)) <= cfg.goal_radius),
        obstacle_distance=float(obstacle_distance),
        time_to_collision=float(ttc),
        dt=dt,
        distance_travelled=abs(speed) * dt,
        speed_limit=route.speed_limit(proj.s, cfg.reward.route_speed_deceleration),
        marking_overlap=overlap,
    )
    return q, proj, Tracker(proj.s, speed, long_acc, ego.elapsed)
