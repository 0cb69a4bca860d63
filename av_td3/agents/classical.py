"""The classical baseline: PID speed control plus Pure Pursuit steering, from the observation alone.

It reads only the contract's 53-float vector (``contract.build_vector``): the speed (``vector[0]`` x 30
m/s) and the 25 route waypoints ahead (``vector[3:]``, (x forward, y right) pairs in the vehicle frame,
/50 m). So it drives in every driving env (embedded or CARLA) unchanged; it does not see the camera, so
by default it does not react to other vehicles. With ``agent.car_following`` it also reads the gap and
closing speed to the vehicle ahead (the vector's obstacle features, env.observe_obstacle) and follows it
by IDM's speed law. It has no ``update``: the trainer only evaluates it.

Steering: the look-ahead point is where the route polyline (the vehicle, then the waypoints) first lies
``lookahead`` metres from the vehicle; the Pure Pursuit angle for a vehicle of ``wheelbase`` is
``atan(2 L sin(alpha) / l_d)`` with ``alpha`` the point's bearing (positive to the right, as the
contract's steer), and ``steer = angle / contract.MAX_STEER_RAD`` clipped to [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np

from av_td3.agents.spec import AgentSpec
from av_td3.envs.contract import (MAX_STEER_RAD, N_WAYPOINTS, OBSTACLE_FEATURES, SPEED_SCALE, VECTOR,
                                  VECTOR_SIZE, WAYPOINT_SCALE)


class ClassicalAgent:
    def __init__(self, spec: AgentSpec, target_speed: float, kp: float, ki: float, kd: float,
                 lookahead: float, wheelbase: float, dt: float | None = None, car_following: bool = False,
                 follow_time_headway: float = 1.5, follow_min_gap: float = 2.0,
                 follow_max_acceleration: float = 3.0, follow_comfortable_deceleration: float = 3.0,
                 follow_full_brake: float = 8.0):
        # It reads the first 53 floats; optional features after them (env.observe_*) are ignored.
        if spec.vector_size < VECTOR_SIZE or spec.action_dim != 2:
            raise ValueError(
                f"the classical controller needs a driving env's observation vector ({VECTOR_SIZE} "
                f"floats) and [steer, throttle_brake] actions; got vector {spec.vector_size}, "
                f"action {spec.action_dim}")
        self.target_speed, self.kp, self.ki, self.kd = target_speed, kp, ki, kd
        # dt None: the time between actions the env and trainer.action_repeat give (AgentSpec.step_seconds).
        self.lookahead, self.wheelbase, self.dt = lookahead, wheelbase, spec.step_seconds if dt is None else dt
        if car_following and spec.vector_size < VECTOR_SIZE + OBSTACLE_FEATURES:
            raise ValueError("agent.car_following needs the obstacle features in the vector (env.observe_obstacle)")
        self.car_following, self.obstacle_range = car_following, spec.obstacle_range
        self.headway, self.min_gap = follow_time_headway, follow_min_gap
        self.max_accel, self.comfort_decel, self.full_brake = (follow_max_acceleration, follow_comfortable_deceleration,
                                                               follow_full_brake)
        self.reset()

    def reset(self) -> None:
        """Clear the PID state (integral, last speed): call at every episode start."""
        self.integral = 0.0
        self.prev_speed: float | None = None

    # --- acting ----------------------------------------------------------------------------------------
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        vector = np.asarray(obs[VECTOR], dtype=np.float64)
        speed = float(vector[0]) * SPEED_SCALE
        waypoints = vector[3:3 + 2 * N_WAYPOINTS].reshape(N_WAYPOINTS, 2) * WAYPOINT_SCALE
        pedal = self.throttle_brake(speed)
        if self.car_following:
            gap, closing = vector[VECTOR_SIZE] * self.obstacle_range, vector[VECTOR_SIZE + 1] * SPEED_SCALE
            if gap < self.obstacle_range:  # a vehicle ahead in the lane
                pedal = min(pedal, self.follow(speed, gap, closing))
        return np.array([self.steer(waypoints), pedal], dtype=np.float32)

    def follow(self, speed: float, gap: float, closing: float) -> float:
        """IDM's acceleration behind a vehicle ``gap`` m ahead that the ego closes on at ``closing`` m/s,
        as a pedal value (throttle per max acceleration, brake per full-brake deceleration)."""
        desired = self.min_gap + max(0.0, speed * self.headway
                                     + speed * closing / (2.0 * math.sqrt(self.max_accel * self.comfort_decel)))
        accel = self.max_accel * (1.0 - (speed / self.target_speed) ** 4 - (desired / max(gap, 0.1)) ** 2)
        return float(np.clip(accel / (self.max_accel if accel > 0 else self.full_brake), -1.0, 1.0))

    def throttle_brake(self, speed: float) -> float:
        """PID on the speed error; derivative on the measurement (no kick when the target changes);
        the integral stops growing while the output saturates (anti-windup)."""
        error = self.target_speed - speed
        derivative = 0.0 if self.prev_speed is None else -(speed - self.prev_speed) / self.dt
        self.prev_speed = speed
        u = self.kp * error + self.ki * (self.integral + error * self.dt) + self.kd * derivative
        if -1.0 < u < 1.0 or (u >= 1.0) != (error > 0):  # not saturated, or the error unwinds it
            self.integral += error * self.dt
        return float(np.clip(u, -1.0, 1.0))

    def steer(self, waypoints: np.ndarray) -> float:
        target = lookahead_point(waypoints, self.lookahead)
        ld = float(np.hypot(*target))
        if ld < 1e-3:  # at the goal: nothing ahead to steer to
            return 0.0
        alpha = math.atan2(target[1], target[0])  # + to the right
        angle = math.atan2(2.0 * self.wheelbase * math.sin(alpha), ld)
        return float(np.clip(angle / MAX_STEER_RAD, -1.0, 1.0))


def lookahead_point(waypoints: np.ndarray, distance: float) -> np.ndarray:
    """The first point of the polyline (0, 0) -> waypoints at ``distance`` from the origin, interpolated
    along its segment; the last waypoint when the route ends closer (near the goal)."""
    pts = np.vstack([np.zeros((1, 2)), waypoints])
    r = np.hypot(pts[:, 0], pts[:, 1])
    beyond = np.nonzero(r >= distance)[0]
    if len(beyond) == 0:
        return pts[-1]
    i = int(beyond[0])
    if i == 0:
        return pts[0]
    # Solve |p + t (q - p)| = distance for t in [0, 1] on the segment that crosses the circle.
    p, d = pts[i - 1], pts[i] - pts[i - 1]
    a, b, c = d @ d, 2 * p @ d, p @ p - distance**2
    t = (-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a) if a > 0 else 1.0
    return p + np.clip(t, 0.0, 1.0) * d
