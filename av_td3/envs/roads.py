"""The embedded simulator's roads: two lanes in the driving direction along a route.

A road is built either as the built-in one (SPEC's route shape: ``straight_length`` m west, a 90-degree
right turn of ``turn_radius``, ``exit_length`` m north) or along any route file (envs/route_file.py): the
polyline is cut into straight runs and circular arcs (``fit_pieces``), each of which becomes one
highway-env StraightLane or CircularLane per lane, so NPCs follow the same curves the ego's route does.
Lane 0 is the left lane, lane 1 the right one; the route is the right lane's centre line. Lane sections
run ``n0 -> n1 -> ... -> goal``; with ``env.npc_lead_in`` a straight section ``lead -> (first node)``
extends the road behind the route's start, and with ``env.road_run_out`` a straight ``goal -> out`` goes on
past the goal (so a dashcam does not see the road end there); NPCs past the road's end leave it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from highway_env.road.lane import CircularLane, LineType, StraightLane
from highway_env.road.road import RoadNetwork

from av_td3.envs.route import Route
from av_td3.envs.route_file import RouteFileError, read_points, resolve

RIGHT_LANE = 1  # the ego's lane (highway-env numbers a road's lanes from the left)
ARC_STEP = 0.5  # m between the route points sampled on an arc (the Route densifies to 0.5 m too)
FIT_TOLERANCE = 0.01  # m: a polyline point lies on a fitted line or arc within this distance
LINES = ([LineType.CONTINUOUS, LineType.STRIPED], [LineType.NONE, LineType.CONTINUOUS])  # per lane: edge + divider


@dataclass(frozen=True)
class Piece:
    """A straight (``centre`` None) from ``start`` to ``end``, or an arc around ``centre`` of ``radius``
    from phase ``phi0`` to ``phi1`` (right turn when phi1 > phi0: yaw grows towards y, the right)."""

    start: tuple[float, float]
    end: tuple[float, float]
    centre: tuple[float, float] | None = None
    radius: float = 0.0
    phi0: float = 0.0
    phi1: float = 0.0

    @property
    def length(self) -> float:
        if self.centre is None:
            return math.dist(self.start, self.end)
        return self.radius * abs(self.phi1 - self.phi0)

    def points(self) -> np.ndarray:
        """The centre line sampled every ARC_STEP m on an arc (both ends included), or its two ends."""
        if self.centre is None:
            return np.array([self.start, self.end])
        phi = np.linspace(self.phi0, self.phi1, max(int(math.ceil(self.length / ARC_STEP)), 2) + 1)
        return np.stack([self.centre[0] + self.radius * np.cos(phi), self.centre[1] + self.radius * np.sin(phi)], 1)


def _on_line(xy: np.ndarray) -> bool:
    d = xy[-1] - xy[0]
    n = np.hypot(*d)
    rel = xy - xy[0]
    along = rel @ d / n
    off = np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0]) / n
    return bool(off.max() <= FIT_TOLERANCE and np.all(np.diff(along) > 0))


def _arc(xy: np.ndarray) -> Piece | None:
    """The circle through the first, middle and last point, if every point lies on it in order and the
    points sample it evenly: at least 3 chords, the longest at most twice the shortest (any 3 points lie
    on some circle, so a straight's end and the next arc's first point must not make one)."""
    chords = np.hypot(*np.diff(xy, axis=0).T)
    if len(chords) < 3 or chords.max() > 2 * chords.min():
        return None
    a, b, c = xy[0], xy[len(xy) // 2], xy[-1]
    det = 2 * ((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
    if abs(det) < 1e-9:
        return None
    sa, sb, sc = a @ a, b @ b, c @ c
    cx = ((sb - sa) * (c[1] - a[1]) - (sc - sa) * (b[1] - a[1])) / det
    cy = ((sc - sa) * (b[0] - a[0]) - (sb - sa) * (c[0] - a[0])) / det
    rel = xy - (cx, cy)
    r = np.hypot(rel[:, 0], rel[:, 1])
    radius = float(np.hypot(*(a - (cx, cy))))
    if np.abs(r - radius).max() > FIT_TOLERANCE:
        return None
    phi = np.unwrap(np.arctan2(rel[:, 1], rel[:, 0]))
    steps = np.diff(phi)
    if not (np.all(steps > 0) or np.all(steps < 0)) or abs(phi[-1] - phi[0]) >= 2 * math.pi:
        return None
    return Piece(tuple(a), tuple(c), (float(cx), float(cy)), radius, float(phi[0]), float(phi[-1]))


def fit_pieces(xy: np.ndarray) -> list[Piece]:
    """The polyline as straight runs and circular arcs: from where the last piece ended, the longest run
    of points that one line (preferred) or one circle holds within FIT_TOLERANCE (a run that fails ends
    the search once it has the 3 chords an arc needs); a lone segment is a straight."""
    pieces, i, n = [], 0, len(xy)
    while i < n - 1:
        j, best = i + 1, Piece(tuple(xy[i]), tuple(xy[i + 1]))
        for k in range(i + 2, n):
            run = xy[i:k + 1]
            piece = Piece(tuple(run[0]), tuple(run[-1])) if _on_line(run) else _arc(run)
            if piece is not None:
                j, best = k, piece
            elif k - i >= 3:
                break
        pieces.append(best)
        i = j
    return pieces


def _lanes(piece: Piece, w: float) -> list:
    """The piece's left and right lane (route = the right lane's centre line)."""
    if piece.centre is None:
        (x0, y0), (x1, y1) = piece.start, piece.end
        length = math.hypot(x1 - x0, y1 - y0)
        left = np.array([(y1 - y0) / length, -(x1 - x0) / length])  # (sin yaw, -cos yaw)
        return [StraightLane(np.array(piece.start) + (RIGHT_LANE - k) * w * left,
                             np.array(piece.end) + (RIGHT_LANE - k) * w * left, width=w, line_types=LINES[k])
                for k in range(2)]
    right_turn = piece.phi1 > piece.phi0
    lanes = []
    for k in range(2):
        off = (RIGHT_LANE - k) * w  # how far left of the route this lane's centre lies
        radius = piece.radius + off if right_turn else piece.radius - off  # left of a right turn: outer
        if radius < w / 2:
            raise RouteFileError(f"an arc of radius {piece.radius:.1f} m is too tight for two lanes of "
                                 f"{w:g} m (at least {1.5 * w:g} m)")
        lanes.append(CircularLane(list(piece.centre), radius, piece.phi0, piece.phi1, clockwise=right_turn,
                                  width=w, line_types=LINES[k]))
    return lanes


def _straight_section(net: RoadNetwork, origin: str, destination: str, a: np.ndarray, b: np.ndarray,
                      yaw: float, w: float) -> None:
    """Both lanes of a straight section from ``a`` to ``b`` (the ego lane's centre line, heading ``yaw``)."""
    left = np.array([math.sin(yaw), -math.cos(yaw)])
    for k in range(2):
        off = (RIGHT_LANE - k) * w * left
        net.add_lane(origin, destination, StraightLane(a + off, b + off, width=w, line_types=LINES[k]))


def _lead_in(net: RoadNetwork, first_node: str, start: np.ndarray, yaw: float, length: float, w: float) -> None:
    if length > 0:
        _straight_section(net, "lead", first_node, start - length * np.array([math.cos(yaw), math.sin(yaw)]), start,
                          yaw, w)


def _run_out(net: RoadNetwork, goal: np.ndarray, yaw: float, length: float, w: float) -> None:
    if length > 0:
        _straight_section(net, "goal", "out", goal, goal + length * np.array([math.cos(yaw), math.sin(yaw)]),
                          yaw, w)


def road_from_file(name: str, lane_width: float, lead_in: float = 0.0,
                   network_class: type[RoadNetwork] = RoadNetwork, run_out: float = 0.0) -> tuple[RoadNetwork, Route]:
    """The two-lane road along a route file, and the ego lane's centre line (the fitted pieces, arcs
    sampled every ARC_STEP m), each of whose points has the target speed of the file's nearest point."""
    xy, speeds = read_points(name)
    try:
        pieces = fit_pieces(xy)
        net = network_class()
        nodes = [f"n{k}" for k in range(len(pieces))] + ["goal"]
        for k, piece in enumerate(pieces):
            for lane in _lanes(piece, lane_width):
                net.add_lane(nodes[k], nodes[k + 1], lane)
    except RouteFileError as e:
        raise RouteFileError(f"{resolve(name)}: {e}") from None
    points = np.vstack([pieces[0].points()[:1]] + [p.points()[1:] for p in pieces])
    nearest = np.argmin(((points[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2), axis=1)
    route = Route(points, speeds[nearest])
    _lead_in(net, nodes[0], route.start, route.start_yaw(), lead_in, lane_width)
    _run_out(net, route.goal, float(route.seg_yaw[-1]), run_out, lane_width)
    return net, route


def builtin_road(straight_length: float, turn_radius: float, exit_length: float, lane_width: float,
                 lead_in: float = 0.0, network_class: type[RoadNetwork] = RoadNetwork,
                 run_out: float = 0.0) -> tuple[RoadNetwork, Route]:
    """The built-in road (sections start -> turn -> exit -> goal) and the ego lane's centre line."""
    w, length, r = lane_width, straight_length, turn_radius
    net = network_class()
    for lane in range(2):
        off = (RIGHT_LANE - lane) * w  # how far left of the route this lane's centre lies
        # Heading west the left is +y; round the right turn the left lane is the outer one; north, -x.
        net.add_lane("start", "turn", StraightLane([length, off], [0.0, off], width=w, line_types=LINES[lane]))
        net.add_lane("turn", "exit", CircularLane([0.0, -r], r + off, math.pi / 2, math.pi, clockwise=True,
                                                  width=w, line_types=LINES[lane]))
        net.add_lane("exit", "goal", StraightLane([-r - off, -r], [-r - off, -r - exit_length], width=w,
                                                  line_types=LINES[lane]))
    phi = np.linspace(math.pi / 2, math.pi, max(int(math.ceil(r * math.pi / 2 / ARC_STEP)), 2) + 1)
    arc = np.stack([r * np.cos(phi), -r + r * np.sin(phi)], axis=1)
    xy = np.vstack([[[length, 0.0]], arc, [[-r, -r - exit_length]]])
    route = Route(xy)
    _lead_in(net, "start", route.start, route.start_yaw(), lead_in, w)
    _run_out(net, route.goal, float(route.seg_yaw[-1]), run_out, w)
    return net, route
