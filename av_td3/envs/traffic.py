"""NPC traffic for the embedded simulator: highway-env's Road with exact broad phases and a level of detail.

highway-env's ``Road`` is all-pairs Python: every IDM vehicle's ``neighbour_vehicles`` projects every
other vehicle onto the lane it asks about (several times per step, for MOBIL's candidate lanes), and
``Road.step`` tests every pair for a collision. At scenario=heavy (25 NPCs) that is ~85% of a step.
``TrafficRoad`` keeps highway-env pinned and unmodified and changes two things:

1. **Broad phases that change nothing.** While the vehicles decide (``act``) no position moves, so each
   lane's projection of every vehicle is computed once per step (with the lane's own
   ``local_coordinates`` and ``on_lane``, the very calls highway-env makes) and every
   ``neighbour_vehicles`` query reads it, with the same comparisons in the same order (ties included).
   Before the collision loop, one numpy distance matrix drops the pairs that highway-env's own spherical
   pre-check (``_is_colliding``) would drop, with a 1 m margin; the remaining pairs are handled in
   highway-env's order by highway-env's code. With ``lod_radius=inf`` a step is therefore bit-identical
   to ``Road``'s (``tests/test_traffic.py`` checks 2,000 steps of observations, rewards and infos).
2. **Level of detail** (``env.npc_lod_radius``), as CARLA's Traffic Manager does in hybrid physics mode.
   NPCs farther than the radius from the ego are *far*: they follow their lane kinematically (same
   lateral offset, lane heading), keep IDM's longitudinal law against the vehicle ahead on their lane
   (found in a per-lane sorted list, so they neither rear-end anyone nor freeze), and skip MOBIL, the
   steering controller, the closest-lane search and collision tests. Within the radius they are full
   IDM/MOBIL vehicles. The switch keeps position and speed (a far NPC's state is a full vehicle's
   state), so an NPC crossing the boundary neither jumps nor changes speed.
"""

from __future__ import annotations

import math

import numpy as np
from highway_env.vehicle.objects import Landmark
from highway_env.road.lane import AbstractLane, CircularLane, StraightLane
from highway_env.road.road import LaneIndex, Road, RoadNetwork
from highway_env import utils
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.kinematics import Vehicle

COLLISION_MARGIN = 1.0  # m added to highway-env's spherical pre-check bound, so rounding never drops a pair


class TrafficNetwork(RoadNetwork):
    """A ``RoadNetwork`` whose closest-lane search (every vehicle, every step) skips the lanes that cannot
    win: a lane's distance_with_heading is at least the Euclidean distance from the position to the
    bounding box of its centre line, so lanes whose box is farther than the best distance found are not
    evaluated. Lanes are tried nearest box first; the winner is the one ``RoadNetwork`` picks (the first
    minimum in lane order), so the result is identical."""

    def __init__(self):
        super().__init__()
        self._boxes: list[tuple[LaneIndex, AbstractLane, tuple[float, float, float, float]]] | None = None

    def add_lane(self, _from: str, _to: str, lane: AbstractLane) -> None:
        super().add_lane(_from, _to, lane)
        self._boxes = None

    def boxes(self) -> list[tuple[LaneIndex, AbstractLane, tuple[float, float, float, float]]]:
        """(index, lane, centre-line bounding box) in RoadNetwork's lane order."""
        if self._boxes is None:
            self._boxes = [((f, t, i), lane, centre_line_box(lane))
                           for f, tos in self.graph.items() for t, lanes in tos.items()
                           for i, lane in enumerate(lanes)]
        return self._boxes

    def get_closest_lane_index(self, position: np.ndarray, heading: float | None = None) -> LaneIndex:
        x, y = float(position[0]), float(position[1])
        bounds = sorted((box_distance(box, x, y) - BOUND_SLACK, order, index, lane)
                        for order, (index, lane, box) in enumerate(self.boxes()))
        best, best_order, best_index = math.inf, -1, None
        for bound, order, index, lane in bounds:
            if bound > best:
                break  # this lane and all after it are farther than the best
            d = lane.distance_with_heading(position, heading)
            if d < best or (d == best and order < best_order):
                best, best_order, best_index = d, order, index
        return best_index


class TrafficRoad(Road):
    """A ``Road`` whose ``act`` / ``step`` / ``neighbour_vehicles`` are exact broad-phase versions of
    highway-env's, with NPCs beyond ``lod_radius`` m of ``centre`` (the ego) simulated kinematically."""

    def __init__(self, network: RoadNetwork, np_random: np.random.RandomState, lod_radius: float = math.inf):
        super().__init__(network, np_random=np_random)
        if not lod_radius > 0:
            raise ValueError(f"lod_radius must be > 0 (inf: every NPC fully simulated), got {lod_radius}")
        self.lod_radius = float(lod_radius)
        self.centre: Vehicle | None = None  # the ego: the level of detail is measured from it
        self._lanes: dict[LaneIndex, list[tuple[float, Vehicle]]] | None = None  # per-step projections
        self._points: list[Vehicle] = []  # vehicles and objects (no landmarks), while the cache is live
        self._xy = np.zeros((0, 2))  # their positions
        self._queues: dict[LaneIndex, list[tuple[float, Vehicle]]] = {}  # far tier: by own lane, sorted
        self.far: set[int] = set()  # id() of the NPCs simulated kinematically on this step
        self._coords: dict[int, tuple[float, float]] = {}  # this step's lane coordinates, by id(vehicle)
        self._rank: dict[int, int] = {}  # this step's place of each vehicle in its lane queue
        self._successors: dict[LaneIndex, LaneIndex | None] = {}  # _next_lane's answers (the network is fixed)

    # --- the per-step lane projections ----------------------------------------------------------------
    def _on_lane(self, lane_index: LaneIndex) -> list[tuple[float, Vehicle]]:
        """(longitudinal, vehicle) for every vehicle or object on the lane (margin 1 m, as highway-env's
        neighbour search), in ``vehicles + objects`` order; computed once per step per lane, and only for
        the vehicles inside the lane's grown box (one numpy test), which holds every one that can be on it."""
        entries = self._lanes.get(lane_index)
        if entries is None:
            lane = self.network.get_lane(lane_index)
            box = _on_lane_box(lane)
            if box is None:
                candidates = range(len(self._points))
            else:
                xy = self._xy
                candidates = np.flatnonzero((xy[:, 0] >= box[0]) & (xy[:, 0] <= box[2])
                                            & (xy[:, 1] >= box[1]) & (xy[:, 1] <= box[3])).tolist()
            entries = []
            for i in candidates:
                v = self._points[i]
                s_v, lat_v = lane.local_coordinates(v.position)
                if lane.on_lane(v.position, s_v, lat_v, margin=1):
                    entries.append((s_v, v))
            self._lanes[lane_index] = entries
        return entries

    def neighbour_vehicles(self, vehicle: Vehicle, lane_index: LaneIndex = None):
        if self._lanes is None or self.neighbour_vehicles_connected_lanes:
            return super().neighbour_vehicles(vehicle, lane_index)  # positions may be moving: no cache
        lane_index = lane_index or vehicle.lane_index
        if not lane_index:
            return None, None
        s = self.network.get_lane(lane_index).local_coordinates(vehicle.position)[0]
        s_front = s_rear = None
        v_front = v_rear = None
        for s_v, v in self._on_lane(lane_index):  # Road.neighbour_vehicles' comparisons, tie for tie
            if v is vehicle:
                continue
            if s <= s_v and (s_front is None or s_v <= s_front):
                s_front, v_front = s_v, v
            if s_v < s and (s_rear is None or s_v > s_rear):
                s_rear, v_rear = s_v, v
        return v_front, v_rear

    # --- decide and move ------------------------------------------------------------------------------
    def act(self) -> None:
        self._lanes = {}
        self._points = [v for v in self.vehicles + self.objects if not isinstance(v, Landmark)]
        self._xy = np.array([v.position for v in self._points], dtype=np.float64).reshape(-1, 2)
        self.far = self._far_npcs()
        self._queues = self._lane_queues() if self.far else {}
        try:
            for vehicle in self.vehicles:
                if id(vehicle) in self.far:
                    self._act_far(vehicle)
                else:
                    vehicle.act()
        finally:
            self._lanes, self._points, self._queues = None, [], {}

    def step(self, dt: float) -> None:
        for vehicle in self.vehicles:
            if id(vehicle) in self.far:
                self._step_far(vehicle, dt)
            else:
                vehicle.step(dt)
        full = [v for v in self.vehicles if id(v) not in self.far]
        for a, b in _candidate_pairs(full, dt):
            a.handle_collisions(b, dt)
        for vehicle in full:
            for other in self.objects:
                vehicle.handle_collisions(other, dt)
        self.far, self._coords, self._rank = set(), {}, {}

    # --- the far tier ---------------------------------------------------------------------------------
    def _far_npcs(self) -> set[int]:
        if self.centre is None or math.isinf(self.lod_radius) or not len(self._xy):
            return set()
        cx, cy = (float(c) for c in self.centre.position)
        r2 = self.lod_radius ** 2
        return {id(v) for v, (x, y) in zip(self._points, self._xy.tolist())  # floats: a few dozen points
                if (x - cx) * (x - cx) + (y - cy) * (y - cy) > r2
                and v is not self.centre and isinstance(v, IDMVehicle) and not v.crashed}

    def _lane_queues(self) -> dict[LaneIndex, list[tuple[float, Vehicle]]]:
        """Every vehicle by the lane it is on (its own lane_index), sorted by its position along it: the
        far tier's leaders, found without scanning (full vehicles' lane-change targets are not in it)."""
        queues: dict[LaneIndex, list[tuple[float, Vehicle]]] = {}
        self._coords, self._rank = {}, {}
        for v in self.vehicles:
            if v.lane_index is not None:
                coords = self._coords[id(v)] = _coordinates(v.lane, v.position)
                queues.setdefault(v.lane_index, []).append((coords[0], v))
        for q in queues.values():
            q.sort(key=lambda e: e[0])
            for k, (_, v) in enumerate(q):
                self._rank[id(v)] = k
        return queues

    def _act_far(self, v: IDMVehicle) -> None:
        """IDM's acceleration (IDMVehicle.acceleration's formula, on floats) against the vehicle ahead on
        the lane; no lane change, no steering."""
        v.target_lane_index = v.lane_index
        speed = max(float(v.speed), 0.0)
        target = float(getattr(v, "target_speed", 0.0))
        if v.lane.speed_limit is not None:
            target = min(max(target, 0.0), v.lane.speed_limit)
        accel = v.COMFORT_ACC_MAX * (1 - (speed / abs(utils.not_zero(target))) ** v.DELTA)
        gap, front = self._leader(v)
        if front is not None:
            closing = speed - float(front.speed) * math.cos(float(front.heading) - float(v.heading))
            desired = v.DISTANCE_WANTED + speed * v.TIME_WANTED \
                + speed * closing / (2 * math.sqrt(-v.COMFORT_ACC_MAX * v.COMFORT_ACC_MIN))
            accel -= v.COMFORT_ACC_MAX * (desired / utils.not_zero(gap)) ** 2
        v.action = {"steering": 0.0, "acceleration": min(max(accel, -v.ACC_MAX), v.ACC_MAX)}

    def _leader(self, v: Vehicle) -> tuple[float, Vehicle | None]:
        """(centre-to-centre distance along the lane, vehicle) to the next vehicle on v's lane, or else to
        the first one on the lane it continues into."""
        queue, k = self._queues.get(v.lane_index, []), self._rank.get(id(v))
        if k is None or k >= len(queue) or queue[k][1] is not v:
            return math.inf, None
        s = queue[k][0]
        if k + 1 < len(queue):
            return queue[k + 1][0] - s, queue[k + 1][1]
        nxt = self._next_lane(v.lane_index)
        ahead = self._queues.get(nxt) if nxt is not None else None
        if ahead:
            return v.lane.length - s + ahead[0][0], ahead[0][1]
        return math.inf, None

    def _next_lane(self, index: LaneIndex) -> LaneIndex | None:
        """The lane a far NPC continues into past the end of ``index`` (the first road out of its end
        node, the same lane number or the last one there); None at the end of the network."""
        if index not in self._successors:
            _, to, lane_id = index
            nxt = self.network.graph.get(to)
            if nxt:
                road, lanes = next(iter(nxt.items()))
                self._successors[index] = (to, road, min(lane_id, len(lanes) - 1))
            else:
                self._successors[index] = None
        return self._successors[index]

    def _step_far(self, v: IDMVehicle, dt: float) -> None:
        """Along the lane at the same lateral offset: the distance Vehicle.step would move at this speed,
        then IDM's acceleration (Vehicle.step's order), onto the next lane past the end."""
        v.timer += dt
        v.clip_actions()  # Vehicle.step's speed limits
        lane, index = v.lane, v.lane_index
        coords = self._coords.get(id(v))  # _lane_queues' (the position has not moved since)
        s, lateral = coords if coords is not None else _coordinates(lane, v.position)
        s += max(v.speed, 0.0) * dt
        nxt = self._next_lane(index)
        if s > lane.length and nxt is not None:
            s -= lane.length
            index, lane = nxt, self.network.get_lane(nxt)
        geometry = _straight(lane)
        if geometry is None:
            v.position = lane.position(s, lateral)
        else:  # StraightLane.position's arithmetic, in the same order, on floats
            x0, y0, dx, dy, lx, ly = geometry
            v.position = np.array([x0 + s * dx + lateral * lx, y0 + s * dy + lateral * ly])
        v.heading = lane.heading_at(s)
        v.speed += v.action["acceleration"] * dt
        v.lane_index = v.target_lane_index = index
        v.lane = lane


class TrafficVehicle(IDMVehicle):
    """highway-env's IDM/MOBIL vehicle, step for step, with its scalar ``np.clip`` calls (seven per
    vehicle per step, ~5 us each: numpy's dispatch on a Python float) as comparisons. A clip is two
    comparisons, so every value is the same; the transcendental calls stay numpy's (its float64 arcsin,
    arctan and power need not round as libm's do). ``act``, ``steering_control`` and ``acceleration`` are
    IDMVehicle's and ControlledVehicle's bodies with only that change; ``tests/test_traffic.py`` holds
    them to highway-env's own vehicle bit for bit."""

    def act(self, action: dict | str = None):
        if self.crashed:
            return
        action = {}
        self.follow_road()  # lateral: MOBIL
        if self.enable_lane_change:
            self.change_lane_policy()
        action["steering"] = _clip(self.steering_control(self.target_lane_index),
                                   -self.MAX_STEERING_ANGLE, self.MAX_STEERING_ANGLE)
        front_vehicle, rear_vehicle = self.road.neighbour_vehicles(self, self.lane_index)  # longitudinal: IDM
        action["acceleration"] = self.acceleration(ego_vehicle=self, front_vehicle=front_vehicle,
                                                   rear_vehicle=rear_vehicle)
        if self.lane_index != self.target_lane_index:  # changing lane: both the current and target lanes
            front_vehicle, rear_vehicle = self.road.neighbour_vehicles(self, self.target_lane_index)
            target = self.acceleration(ego_vehicle=self, front_vehicle=front_vehicle, rear_vehicle=rear_vehicle)
            action["acceleration"] = min(action["acceleration"], target)
        action["acceleration"] = _clip(action["acceleration"], -self.ACC_MAX, self.ACC_MAX)
        Vehicle.act(self, action)  # not ControlledVehicle.act, which would override the command

    def steering_control(self, target_lane_index: LaneIndex) -> float:
        target_lane = self.road.network.get_lane(target_lane_index)
        lane_coords = target_lane.local_coordinates(self.position)
        lane_next_coords = lane_coords[0] + self.speed * self.TAU_PURSUIT
        lane_future_heading = target_lane.heading_at(lane_next_coords)
        lateral_speed_command = -self.KP_LATERAL * lane_coords[1]
        heading_command = np.arcsin(_clip(lateral_speed_command / utils.not_zero(self.speed), -1, 1))
        heading_ref = lane_future_heading + _clip(heading_command, -np.pi / 4, np.pi / 4)
        heading_rate_command = self.KP_HEADING * utils.wrap_to_pi(heading_ref - self.heading)
        slip_angle = np.arcsin(_clip(self.LENGTH / 2 / utils.not_zero(self.speed) * heading_rate_command, -1, 1))
        steering_angle = np.arctan(2 * np.tan(slip_angle))
        return float(_clip(steering_angle, -self.MAX_STEERING_ANGLE, self.MAX_STEERING_ANGLE))

    def acceleration(self, ego_vehicle, front_vehicle: Vehicle = None, rear_vehicle: Vehicle = None) -> float:
        if not ego_vehicle or not isinstance(ego_vehicle, Vehicle):
            return 0
        ego_target_speed = getattr(ego_vehicle, "target_speed", 0)
        if ego_vehicle.lane and ego_vehicle.lane.speed_limit is not None:
            ego_target_speed = _clip(ego_target_speed, 0, ego_vehicle.lane.speed_limit)
        acceleration = self.COMFORT_ACC_MAX * (
            1 - np.power(max(ego_vehicle.speed, 0) / abs(utils.not_zero(ego_target_speed)), self.DELTA))
        if front_vehicle:
            d = ego_vehicle.lane_distance_to(front_vehicle)
            acceleration -= self.COMFORT_ACC_MAX * np.power(
                self.desired_gap(ego_vehicle, front_vehicle) / utils.not_zero(d), 2)
        return acceleration


def _clip(x, lo, hi):
    """np.clip(x, lo, hi) for one number: the same value (NaN stays NaN), without numpy's dispatch."""
    return x if lo <= x <= hi else (lo if x < lo else (hi if x > hi else x))


BOUND_SLACK = 1e-6  # m taken off every lower bound, so rounding never skips the lane that wins


def centre_line_box(lane: AbstractLane) -> tuple[float, float, float, float] | None:
    """(x_lo, y_lo, x_hi, y_hi) of a straight or circular lane's centre line; None for other shapes."""
    if isinstance(lane, StraightLane):
        pts = np.array([lane.start, lane.end], dtype=np.float64)
        pad = 0.0
    elif isinstance(lane, CircularLane):
        phase = np.linspace(lane.start_phase, lane.end_phase, 257)
        pts = lane.center + lane.radius * np.stack([np.cos(phase), np.sin(phase)], axis=1)
        pad = lane.radius * (1 - math.cos(abs(lane.end_phase - lane.start_phase) / 256 / 2))  # chord sag
    else:
        return None
    lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _on_lane_box(lane: AbstractLane) -> tuple[float, float, float, float] | None:
    """A box holding every position ``on_lane(margin=1)`` accepts, with 1 m to spare. A straight lane
    accepts a rectangle in its own frame (VEHICLE_LENGTH past either end, half the width + 1 m
    sideways): the box of its corners. Other lanes: the centre line's box grown by all of that."""
    box = getattr(lane, "_av_td3_on_lane_box", False)
    if box is False:
        half = max(lane.width_at(0.0), lane.width_at(lane.length)) / 2 + 1.0 + 1.0
        if type(lane) is StraightLane:
            ends = (-lane.VEHICLE_LENGTH - 1.0, lane.length + lane.VEHICLE_LENGTH + 1.0)
            corners = np.array([lane.start + s * lane.direction + lat * lane.direction_lateral
                                for s in ends for lat in (-half, half)])
            lo, hi = corners.min(axis=0), corners.max(axis=0)
            box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        else:
            centre = centre_line_box(lane)
            grow = half + lane.VEHICLE_LENGTH
            box = None if centre is None else (centre[0] - grow, centre[1] - grow, centre[2] + grow, centre[3] + grow)
        lane._av_td3_on_lane_box = box
    return box


def box_distance(box: tuple[float, float, float, float] | None, x: float, y: float) -> float:
    """Euclidean distance from (x, y) to the box (0 inside it; 0 for no box: it bounds nothing)."""
    if box is None:
        return 0.0
    dx = max(box[0] - x, 0.0, x - box[2])
    dy = max(box[1] - y, 0.0, y - box[3])
    return math.sqrt(dx * dx + dy * dy)


def _straight(lane: AbstractLane) -> tuple[float, float, float, float, float, float] | None:
    """A StraightLane's start, direction and lateral direction as floats (x0, y0, dx, dy, lx, ly), read
    once per lane: numpy's per-element access costs more than the far tier's arithmetic. None for
    other lane shapes."""
    geometry = getattr(lane, "_av_td3_floats", False)
    if geometry is False:
        geometry = None
        if type(lane) is StraightLane:
            geometry = (*(float(c) for c in lane.start), *(float(c) for c in lane.direction),
                        *(float(c) for c in lane.direction_lateral))
        lane._av_td3_floats = geometry
    return geometry


def _coordinates(lane: AbstractLane, position: np.ndarray) -> tuple[float, float]:
    """lane.local_coordinates on floats for straight lanes (4x cheaper; the far tier's, not bit-exact)."""
    geometry = _straight(lane)
    if geometry is not None:
        x0, y0, dx, dy, lx, ly = geometry
        px, py = position.tolist()
        return (px - x0) * dx + (py - y0) * dy, (px - x0) * lx + (py - y0) * ly
    s, lat = lane.local_coordinates(position)
    return float(s), float(lat)


def _candidate_pairs(vehicles: list[Vehicle], dt: float) -> list[tuple[Vehicle, Vehicle]]:
    """The pairs (a, b), in Road.step's order, that highway-env's spherical pre-check might keep: centre
    distance <= (diagonal_a + diagonal_b) / 2 + |speed_a| dt, plus COLLISION_MARGIN."""
    state = [(float(v.position[0]), float(v.position[1]), v.diagonal / 2, abs(float(v.speed)) * dt, v)
             for v in vehicles]
    pairs = []
    for i, (x, y, half, reach, a) in enumerate(state):
        for x2, y2, half2, _, b in state[i + 1:]:
            bound = half + half2 + reach + COLLISION_MARGIN
            if (x2 - x) ** 2 + (y2 - y) ** 2 <= bound * bound:
                pairs.append((a, b))
    return pairs
