"""The contract every driving env keeps: spaces, action mapping, frame stacking, per-step quantities.

Observation: ``{"image": uint8 (frames, H, W) grayscale, oldest frame first, zeros after reset,
"vector": float32 (53,)}``. Vector = speed/30, signed lateral deviation/3.5, heading error/pi, then 25
route waypoints ahead (x forward, y right, vehicle frame, metres /50). With ``env.observe_obstacle``
(off in the reference) two more floats follow (55 in all): the gap to the nearest obstacle ahead /
obstacle_range (1 when none is in range) and its closing speed / 30 (0 when none, or not closing), the
quantities both envs already measure for the reward; with ``env.observe_acceleration`` one more: the
measured longitudinal acceleration / 8 m/s^2, the state an actuator lag hides from speed alone.
Action: Box(-1, 1, (2,)) =
[steer, throttle_brake]; throttle = max(a1, 0), brake = max(-a1, 0).

Sign conventions (shared by every env, the reward and the metrics): lateral deviation is positive when
the vehicle is to the RIGHT of the route's centre line; heading error is vehicle yaw minus route yaw,
wrapped to [-pi, pi], positive when the vehicle points to the RIGHT of the route (yaw measured
clockwise in the x-forward / y-right frame, as in CARLA's left-handed world).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields

import numpy as np
from gymnasium import spaces

IMAGE = "image"
VECTOR = "vector"

N_WAYPOINTS = 25
WAYPOINT_SPACING = 2.0  # m between route waypoints in the observation (up to 50 m ahead)
SPEED_SCALE = 30.0  # m/s
LATERAL_SCALE = 3.5  # m
WAYPOINT_SCALE = 50.0  # m
VECTOR_SIZE = 3 + 2 * N_WAYPOINTS  # 53
OBSTACLE_FEATURES = 2  # gap / obstacle_range, closing speed / SPEED_SCALE (env.observe_obstacle)
ACCELERATION_SCALE = 8.0  # m/s^2 (env.observe_acceleration): full braking is -1

ACTION_SPACE = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
# Steering angle at steer = +-1. CARLA's Model 3 front wheels turn ~70 deg at full lock; the embedded
# simulator uses the same so a policy's steering means the same on both.
MAX_STEER_RAD = math.radians(70.0)


# env.vector=minimal: speed / 30, acceleration / 8, the previous action (steer, throttle_brake), the route
# command one-hot (follow lane, left, right) and the distance to the announced turn / command_distance
# (1 when following the lane). "Straight" (through a junction) is left out: a route polyline has no
# junctions to go straight through.
COMMANDS = ("follow", "left", "right")
MINIMAL_VECTOR_SIZE = 4 + len(COMMANDS) + 1


def vector_size(cfg) -> int:
    """The vector's length for a driving env config: env.vector=reference's 53 plus the optional
    features it asks for, minimal's 8, or none's 0."""
    if cfg.vector == "none":
        return 0
    if cfg.vector == "minimal":
        return MINIMAL_VECTOR_SIZE
    return VECTOR_SIZE + OBSTACLE_FEATURES * bool(cfg.observe_obstacle) + bool(cfg.observe_acceleration)


def observation_space(cfg) -> spaces.Dict:
    """The observation space of a driving env config (``DrivingEnvConfig``): no image with
    env.camera=none; the vector is always there (0 floats with env.vector=none)."""
    out = {}
    if cfg.camera != "none":
        out[IMAGE] = spaces.Box(0, 255, shape=(cfg.frame_stack, cfg.image_height, cfg.image_width), dtype=np.uint8)
    out[VECTOR] = spaces.Box(-np.inf, np.inf, shape=(vector_size(cfg),), dtype=np.float32)
    return spaces.Dict(out)


def minimal_vector(speed: float, acceleration: float, previous_action: np.ndarray, command: int,
                   turn_distance: float, command_distance: float) -> np.ndarray:
    """env.vector=minimal's 8 floats (see MINIMAL_VECTOR_SIZE). ``command``: an index of COMMANDS;
    ``turn_distance``: m to the announced turn's start (ignored when following the lane)."""
    out = np.zeros(MINIMAL_VECTOR_SIZE, dtype=np.float32)
    out[0], out[1] = speed / SPEED_SCALE, acceleration / ACCELERATION_SCALE
    out[2:4] = previous_action
    out[4 + command] = 1.0
    out[-1] = 1.0 if command == 0 else min(max(turn_distance, 0.0) / command_distance, 1.0)
    return out


def split_action(action: np.ndarray) -> tuple[float, float, float]:
    """[steer, throttle_brake] in [-1, 1] -> (steer, throttle, brake); out-of-range input is clipped."""
    # min/max, not np.clip: the same value (NaN stays NaN), without numpy's ~4 us per scalar call.
    steer = min(max(float(action[0]), -1.0), 1.0)
    tb = min(max(float(action[1]), -1.0), 1.0)
    return steer, max(tb, 0.0), max(-tb, 0.0)


def build_vector(speed: float, lateral_deviation: float, heading_error: float,
                 waypoints_vehicle: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """The 53-float vector. ``waypoints_vehicle``: (25, 2) route points ahead as (x fwd, y right) m.
    ``extra``: ``extra_features(...)``, the optional features, appended."""
    assert waypoints_vehicle.shape == (N_WAYPOINTS, 2), waypoints_vehicle.shape
    head = np.array([speed / SPEED_SCALE, lateral_deviation / LATERAL_SCALE, heading_error / math.pi],
                    dtype=np.float32)
    parts = [head, (waypoints_vehicle / WAYPOINT_SCALE).astype(np.float32).ravel()]
    if extra is not None:
        parts.append(extra)
    return np.concatenate(parts)


def extra_features(q: "StepQuantities", cfg) -> np.ndarray | None:
    """The features past the reference's 53 that a driving env config asks for, from the step's
    quantities: obstacle (gap, closing speed) with observe_obstacle, acceleration with
    observe_acceleration; None when it asks for none."""
    parts = []
    if cfg.observe_obstacle:
        parts.append(obstacle_features(q.obstacle_distance, q.time_to_collision, cfg.obstacle_range))
    if cfg.observe_acceleration:
        parts.append(np.array([q.longitudinal_acceleration / ACCELERATION_SCALE], dtype=np.float32))
    return np.concatenate(parts) if parts else None


# The privileged targets (observation key PRIVILEGED, from a step's info) that agent.aux_weight trains
# the image encoder to predict: where the car is in its lane and what is ahead of it, the quantities the
# reference vector hands the policy and the minimal vector withholds. Scaled to about [-1, 1]: lateral
# deviation / LATERAL_SCALE, heading error / HEADING_TARGET_SCALE, then obstacle_features (gap, closing
# speed). Training only: the policy never reads them.
PRIVILEGED = "privileged"
PRIVILEGED_TARGETS = ("lateral_deviation", "heading_error", "gap", "closing_speed")
HEADING_TARGET_SCALE = 0.25  # rad (~14 deg): lane-following heading errors are a few degrees


def privileged_units(obstacle_range: float) -> dict[str, tuple[float, str]]:
    """Per PRIVILEGED_TARGETS entry: (the scale privileged_targets divides it by, its unit)."""
    return {"lateral_deviation": (LATERAL_SCALE, "m"), "heading_error": (HEADING_TARGET_SCALE, "rad"),
            "gap": (obstacle_range, "m"), "closing_speed": (SPEED_SCALE, "m/s")}


def privileged_targets(info: dict, obstacle_range: float) -> np.ndarray:
    """The PRIVILEGED_TARGETS of the observation a step returned, from its info (StepQuantities)."""
    lane = (info["lateral_deviation"] / LATERAL_SCALE, info["heading_error"] / HEADING_TARGET_SCALE)
    gap = obstacle_features(info["obstacle_distance"], info["time_to_collision"], obstacle_range)
    return np.concatenate([np.array(lane, dtype=np.float32), gap])


def obstacle_features(distance: float, time_to_collision: float, obstacle_range: float) -> np.ndarray:
    """[gap / range, closing speed / SPEED_SCALE] of the nearest obstacle ahead, from the quantities the
    reward reads (``obstacle_distance``, ``time_to_collision``): [1, 0] when none is within range, a
    closing speed of 0 when it is not closing (TTC inf). Closing speed = gap / TTC, as both envs define
    TTC."""
    if not math.isfinite(distance) or distance >= obstacle_range:
        return np.array([1.0, 0.0], dtype=np.float32)
    gap = max(distance, 0.0)
    closing = gap / time_to_collision if math.isfinite(time_to_collision) and time_to_collision > 0 else 0.0
    return np.array([gap / obstacle_range, closing / SPEED_SCALE], dtype=np.float32)


class FrameStack:
    """The last ``frames`` grayscale frames pushed, ``stride`` pushes apart (the newest last, oldest
    first); zeros where the episode has not reached back that far."""

    def __init__(self, frames: int, height: int, width: int, stride: int = 1):
        self.shape, self.stride = (frames, height, width), stride
        self._frames: deque[np.ndarray] = deque(maxlen=(frames - 1) * stride + 1)
        self.reset()

    def reset(self) -> None:
        self._frames.clear()
        for _ in range(self._frames.maxlen):
            self._frames.append(np.zeros(self.shape[1:], dtype=np.uint8))

    def push(self, frame: np.ndarray) -> np.ndarray:
        assert frame.shape == self.shape[1:] and frame.dtype == np.uint8, (frame.shape, frame.dtype)
        self._frames.append(frame)
        return np.stack(list(self._frames)[::self.stride])


LUMA = (0.299, 0.587, 0.114)  # ITU-R 601


def to_gray_uint8(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """RGB/BGR (H, W, 3) uint8 -> grayscale (height, width) uint8: ITU-R 601 luma, area-averaged resize.
    What both driving envs' dashcams hand the policy (CARLA's camera and the embedded one).

    The channel order only matters through the weights, so callers with BGRA data (CARLA) pass
    ``rgb[..., 2::-1]``. float32 throughout: a frame is a few hundred microseconds."""
    gray = rgb[..., 0].astype(np.float32)
    gray *= np.float32(LUMA[0])
    gray += rgb[..., 1] * np.float32(LUMA[1])
    gray += rgb[..., 2] * np.float32(LUMA[2])
    out = resize_area(gray, height, width)
    return out.round(out=out).clip(0, 255, out=out).astype(np.uint8)


def resize_area(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area (box-filter) resize of a 2-D float array to (height, width): each output pixel is the exact
    mean of its (fractional) input box. Separable (rows, then columns), each pass a few weighted gathers
    of whole rows or columns (no BLAS call, whose worker threads would wake for a frame-sized product
    and then spin on the other cores); float32 for float32 input, float64 otherwise."""
    h, w = img.shape
    dtype = np.float32 if img.dtype == np.float32 else np.float64
    if (h, w) == (height, width):
        return img.astype(dtype)
    index, weight = _area_weights(h, height, dtype)
    x = img.astype(dtype, copy=False)
    out = x[index[0]] * weight[0][:, None]
    for k in range(1, len(index)):
        out += x[index[k]] * weight[k][:, None]
    index, weight = _area_weights(w, width, dtype)
    result = out[:, index[0]] * weight[0]
    for k in range(1, len(index)):
        result += out[:, index[k]] * weight[k]
    return result


_AREA_WEIGHTS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _area_weights(n_in: int, n_out: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight), each (K, n_out): output cell i is sum_k weight[k, i] x input[index[k, i]], the
    overlap of input cells with [i n_in / n_out, (i + 1) n_in / n_out) over its length (K: the most
    input cells one output cell touches; unused terms have weight 0)."""
    key = (n_in, n_out, np.dtype(dtype).str)
    cached = _AREA_WEIGHTS.get(key)
    if cached is None:
        edges = np.linspace(0.0, n_in, n_out + 1)
        first = np.floor(edges[:-1]).astype(np.int64)
        k_max = int(np.max(np.ceil(edges[1:] - 1e-9).astype(np.int64) - first))
        index = np.minimum(first[None, :] + np.arange(k_max)[:, None], n_in - 1)
        lo = np.maximum(edges[:-1][None, :], first[None, :] + np.arange(k_max)[:, None])
        hi = np.minimum(edges[1:][None, :], first[None, :] + np.arange(k_max)[:, None] + 1)
        weight = np.clip(hi - lo, 0.0, None) / np.diff(edges)[None, :]
        cached = _AREA_WEIGHTS[key] = (index, weight.astype(dtype))
    return cached


@dataclass
class StepQuantities:
    """Plain per-step kinematic quantities every driving env reports (in ``info``). The reward and the
    evaluation metrics are computed from these alone, never from simulator objects."""

    speed: float  # m/s along the vehicle's heading
    lateral_deviation: float  # m, signed (+ right of the route centre line)
    heading_error: float  # rad, wrapped to [-pi, pi]
    longitudinal_acceleration: float  # m/s^2
    lateral_acceleration: float  # m/s^2
    longitudinal_jerk: float  # m/s^3, d(longitudinal acceleration)/dt
    collision: bool  # a collision happened this step
    lane_invasion: bool  # a lane marking was crossed this step
    off_road: bool  # past env.max_lateral_deviation or env.max_marking_overlap (``off_road`` below)
    progress: float  # m of route distance gained this step (negative when going back)
    distance_to_goal: float  # m along the route
    route_completed: bool
    obstacle_distance: float  # m to the nearest obstacle ahead; inf when none
    time_to_collision: float  # s at the current closing speed; inf when not closing
    dt: float  # simulated seconds this step took
    distance_travelled: float  # m driven this step (speed * dt)
    # m/s: the route's speed limit here (Route.speed_limit) when env.reward.route_speed_deceleration is
    # set, which the reward's target speed then respects; inf otherwise.
    speed_limit: float = math.inf
    # m the vehicle's footprint reaches past its lane's edge (marking_overlap; 0 inside the lane): how far
    # over a marking it is on every step, where lane_invasion only marks the step it starts to cross.
    marking_overlap: float = 0.0

    def as_info(self) -> dict[str, float | bool]:
        # asdict's recursive deep copy costs ~0.1 ms a step; every field is a plain float or bool.
        return {name: getattr(self, name) for name in _STEP_FIELDS}


_STEP_FIELDS = tuple(f.name for f in fields(StepQuantities))


def off_road(lateral: float, overlap: float, max_lateral_deviation: float,
             max_marking_overlap: float | None, bound_ends: bool = True) -> bool:
    """Whether the episode ends as off road: the centre more than ``max_lateral_deviation`` m from the route,
    or the footprint more than ``max_marking_overlap`` m past its lane's edge (None: no footprint bound) on a
    step where ``bound_ends`` (``bound_draw``)."""
    past_bound = max_marking_overlap is not None and overlap > max_marking_overlap
    return abs(lateral) > max_lateral_deviation or (past_bound and bound_ends)


def bound_draw(probability: float, rng: np.random.Generator) -> bool:
    """Whether this step's footprint bound ends the episode, with ``env.marking_bound_probability``. At 1
    nothing is drawn, so every other draw of the episode is as without the setting."""
    return probability >= 1.0 or bool(rng.random() < probability)


def marking_overlap(lateral: float, heading_error: float, half_length: float, half_width: float,
                    lane_width: float) -> float:
    """m the footprint (a half_length x half_width box at ``lateral`` m from the lane's centre line, turned
    ``heading_error`` from it) reaches past the nearer edge of a lane ``lane_width`` m wide; 0 inside. The
    lane is taken as straight (env.marking_geometry=lane_frame); ``Route.footprint_overlap`` places the
    footprint on the route itself (the default)."""
    extent = abs(lateral) + half_width * abs(math.cos(heading_error)) + half_length * abs(math.sin(heading_error))
    return max(extent - lane_width / 2, 0.0)
