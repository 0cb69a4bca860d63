"""Route geometry shared by every driving env: projection, signed lateral deviation, heading error and
the waypoints ahead in the vehicle frame.

The route is one densified polyline with one arc-length array, so every lookup uses one index into one
array (the reference mixed a sparse and a dense array and its waypoint features became zeros).

World frames are left-handed as in CARLA and highway-env: y points to the right of x, yaw grows from x
towards y. A vehicle's forward unit vector is (cos yaw, sin yaw) and its right one (-sin yaw, cos yaw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from av_td3.envs.contract import N_WAYPOINTS, WAYPOINT_SPACING, marking_overlap

# What Route.command calls a turn: a stretch where the heading, averaged over TURN_SMOOTHING m, changes
# faster than 1 / TURN_RADIUS per metre (gaps under TURN_GAP m bridged), turning TURN_ANGLE in all.
# A junction turn (Town01's ~7-9 m) is one; a 100 m curve is lane following.
TURN_RADIUS = 40.0  # m
TURN_ANGLE = math.radians(30.0)
TURN_SMOOTHING = 5.0  # m
TURN_GAP = 2.0  # m


OUTLINE_STEP = 0.5  # m between the points of a footprint's outline that footprint_overlap projects


def box_outline(half_length: float, half_width: float, step: float = OUTLINE_STEP) -> np.ndarray:
    """Points on the edges of a box centred on the origin, (x forward, y right), at most ``step`` m apart
    and with its four corners: along a straight edge the distance to an arc is convex, so its extreme
    on the inside of a turn can fall between the corners."""
    edges = []
    for (x0, y0), (x1, y1) in [((-half_length, -half_width), (half_length, -half_width)),
                               ((half_length, -half_width), (half_length, half_width)),
                               ((half_length, half_width), (-half_length, half_width)),
                               ((-half_length, half_width), (-half_length, -half_width))]:
        n = max(int(math.ceil(math.hypot(x1 - x0, y1 - y0) / step)), 1)
        f = np.arange(n) / n  # each edge from its first corner, the next edge adds the last
        edges.append(np.c_[x0 + (x1 - x0) * f, y0 + (y1 - y0) * f])
    return np.concatenate(edges)


def wrap_angle(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class Projection:
    s: float  # arc length of the closest route point, m from the start
    lateral: float  # signed distance, + right of the route
    route_yaw: float  # route direction at s, rad
    index: int  # segment index in the dense polyline


class Route:
    """A polyline route densified to ``spacing`` metres, with target speeds per point."""

    def __init__(self, xy: np.ndarray, target_speed: np.ndarray | None = None, spacing: float = 0.5):
        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 2:
            raise ValueError(f"a route needs at least 2 (x, y) points, got shape {xy.shape}")
        seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        keep = np.concatenate([[True], seg > 1e-9])  # drop repeated points
        xy = xy[keep]
        speeds = None if target_speed is None else np.asarray(target_speed, dtype=np.float64)[keep]
        s_sparse = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
        n = max(int(math.ceil(s_sparse[-1] / spacing)), 1) + 1
        self.s = np.linspace(0.0, s_sparse[-1], n)
        self.xy = np.stack([np.interp(self.s, s_sparse, xy[:, 0]), np.interp(self.s, s_sparse, xy[:, 1])], 1)
        self.target_speed = None if speeds is None else np.interp(self.s, s_sparse, speeds)
        self._points_speed = None if speeds is None else (s_sparse, speeds)  # for speed_limit
        self._limits: dict[float, np.ndarray] = {}  # deceleration -> speed limit per dense point
        d = np.diff(self.xy, axis=0)
        self.seg_len = np.linalg.norm(d, axis=1)
        self.seg_dir = d / self.seg_len[:, None]
        self.seg_yaw = np.arctan2(d[:, 1], d[:, 0])
        self._x, self._y = self.xy[:, 0].copy(), self.xy[:, 1].copy()  # contiguous: np.interp copies views
        self._offsets: dict[tuple[int, float], np.ndarray] = {}  # waypoints_ahead's spacing * (1..n)
        self._turns: list[tuple[float, float, int]] | None = None  # (start s, end s, +1 right / -1 left)
        self._outlines: dict[tuple[float, float], np.ndarray] = {}  # footprint_overlap's box outlines

    @property
    def length(self) -> float:
        return float(self.s[-1])

    @property
    def start(self) -> np.ndarray:
        return self.xy[0]

    @property
    def goal(self) -> np.ndarray:
        return self.xy[-1]

    def start_yaw(self) -> float:
        return float(self.seg_yaw[0])

    def project(self, position: np.ndarray) -> Projection:
        """The closest point of the route to ``position`` (x, y)."""
        return self.project_many(np.asarray(position, dtype=np.float64)[:2])[0]

    def project_many(self, positions: np.ndarray) -> list[Projection]:
        """The closest route point to each (x, y) row, all in one pass over the route's segments (numpy's
        per-call cost, not the arithmetic, is most of a projection). Each row's result does not depend
        on the others (tests/test_route_contract.py)."""
        p = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        if not len(p):
            return []
        nearest, t, offsets = self._closest(p, 0, len(self.seg_len))
        out = []
        for i, along, off in zip(nearest.tolist(), t, offsets):
            yaw = float(self.seg_yaw[i])
            lateral = -off[0] * math.sin(yaw) + off[1] * math.cos(yaw)
            out.append(Projection(s=float(self.s[i] + along), lateral=float(lateral), route_yaw=yaw, index=i))
        return out

    def _closest(self, p: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each (x, y) row of ``p``, its closest point on segments lo..hi-1: the segment's index, the
        metres along it, and the row minus that point."""
        start, direction = self.xy[lo:hi], self.seg_dir[lo:hi]
        t = np.clip(np.einsum("kij,ij->ki", p[:, None, :] - start, direction), 0.0, self.seg_len[lo:hi])
        closest = start + direction * t[:, :, None]
        nearest = np.argmin(np.sum((p[:, None, :] - closest) ** 2, axis=2), axis=1)
        rows = np.arange(len(p))
        return lo + nearest, t[rows, nearest], p - closest[rows, nearest]

    def footprint_overlap(self, position: np.ndarray, yaw: float, index: int, half_length: float,
                          half_width: float, lane_width: float) -> float:
        """m a vehicle's footprint (a 2 half_length x 2 half_width box at ``position``, heading ``yaw``)
        reaches past the nearer edge of the lane ``lane_width`` m wide around the route; 0 inside. Every
        point of the box's outline (every OUTLINE_STEP m) is projected on the route's segments near
        ``index`` (the centre's projection), so on an arc the footprint is where it is: the corners of a
        car turned into a turn lie farther from the inside edge than a straight lane would put them
        (``contract.marking_overlap``), by up to half_length^2 / (2 radius), 0.39 m on an 8 m arc."""
        outline = self._outlines.get((half_length, half_width))
        if outline is None:
            outline = self._outlines[(half_length, half_width)] = box_outline(half_length, half_width)
        c, s = math.cos(yaw), math.sin(yaw)
        points = np.asarray(position, dtype=np.float64)[:2] + outline @ np.array([[c, s], [-s, c]])
        # Segments within reach of any outline point: a point's nearest route point is at most its
        # distance from the centre (plus the centre's offset) farther along the route.
        reach = int(math.ceil((half_length + half_width + lane_width) / (self.s[1] - self.s[0]))) + 1
        nearest, _, off = self._closest(points, max(index - reach, 0), min(index + reach + 1, len(self.seg_len)))
        direction = self.seg_dir[nearest]
        lateral = off[:, 1] * direction[:, 0] - off[:, 0] * direction[:, 1]  # the offset across the segment
        return max(float(np.abs(lateral).max()) - lane_width / 2, 0.0)

    def marking_overlap(self, geometry: str, position: np.ndarray, yaw: float, proj: Projection,
                        half_length: float, half_width: float, lane_width: float) -> float:
        """StepQuantities.marking_overlap of a vehicle at ``position``, heading ``yaw`` (``proj``: its
        projection), with its footprint placed as env.marking_geometry says: ``outline``
        (``footprint_overlap``) or ``lane_frame`` (``contract.marking_overlap``, a straight lane)."""
        if geometry == "outline":
            return self.footprint_overlap(position, yaw, proj.index, half_length, half_width, lane_width)
        return marking_overlap(proj.lateral, wrap_angle(yaw - proj.route_yaw), half_length, half_width, lane_width)

    def point_at(self, s: np.ndarray | float) -> np.ndarray:
        """(x, y) at arc length(s), clamped to the route's ends."""
        s = np.clip(s, 0.0, self.length)
        return np.stack([np.interp(s, self.s, self._x), np.interp(s, self.s, self._y)], -1)

    def yaw_at(self, s: float) -> float:
        i = int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.seg_yaw) - 1))
        return float(self.seg_yaw[i])

    def speed_limit(self, s: float, deceleration: float | None) -> float:
        """StepQuantities.speed_limit: inf where the reward ignores it (``deceleration`` None, the
        reference) or the route has no target speeds; else the limit at arc length ``s`` they set: a
        stretch between two route points allows the faster of its ends' speeds, and the limit falls
        ahead of every slower point as braking at ``deceleration`` m/s^2 would, reaching that point's speed
        at it. So a straight into a tight arc keeps its own speed until braking must start (linear
        interpolation would slow its whole length)."""
        if deceleration is None or self._points_speed is None:
            return math.inf
        limits = self._limits.get(deceleration)
        if limits is None:
            points, speeds = self._points_speed
            j = np.clip(np.searchsorted(points, self.s, side="right"), 1, len(points) - 1)
            stretch = np.maximum(speeds[j - 1], speeds[j])
            ahead = points[None, :] - self.s[:, None]  # (dense, points): metres to each point ahead
            braking = np.where(ahead >= 0, np.sqrt(speeds[None, :] ** 2 + 2 * deceleration * np.maximum(ahead, 0)),
                               np.inf)
            limits = self._limits[deceleration] = np.minimum(stretch, braking.min(axis=1))
        return float(np.interp(s, self.s, limits))

    def turns(self) -> list[tuple[float, float, int]]:
        """The route's turns (see TURN_RADIUS): (start s, end s, +1 right / -1 left), in order."""
        if self._turns is None:
            yaw = np.unwrap(self.seg_yaw)
            mid = 0.5 * (self.s[:-1] + self.s[1:])
            h = TURN_SMOOTHING / 2
            rate = (np.interp(mid + h, mid, yaw) - np.interp(mid - h, mid, yaw)) / TURN_SMOOTHING
            turning = np.flatnonzero(np.abs(rate) > 1.0 / TURN_RADIUS)
            # Stretches of turning segments, split where two are more than TURN_GAP apart.
            stretches = np.split(turning, np.flatnonzero(np.diff(mid[turning]) > TURN_GAP) + 1) if len(turning) else []
            self._turns = []
            for stretch in stretches:
                self._close_turn(int(stretch[0]), int(stretch[-1]), yaw)
        return self._turns

    def _close_turn(self, first: int, last: int, yaw: np.ndarray) -> None:
        lo, hi = max(first - 1, 0), min(last + 1, len(yaw) - 1)  # include the stretch's own segments
        change = float(yaw[hi] - yaw[lo])
        if abs(change) >= TURN_ANGLE:
            self._turns.append((float(self.s[first]), float(self.s[last + 1]), 1 if change > 0 else -1))

    def command(self, s: float, distance: float) -> tuple[int, float]:
        """The route command at arc length ``s``: (0, inf) to follow the lane, or (1 left / 2 right,
        metres to the turn's start, 0 inside it) for a turn that starts within ``distance`` ahead."""
        for start, end, sign in self.turns():
            if end > s:
                if start - s <= distance:
                    return (1 if sign < 0 else 2), max(start - s, 0.0)
                break
        return 0, math.inf

    def waypoints_ahead(self, position: np.ndarray, yaw: float, s: float,
                        n: int = N_WAYPOINTS, spacing: float = WAYPOINT_SPACING) -> np.ndarray:
        """The ``n`` route points at s + spacing, s + 2 spacing, ... as (x forward, y right) in the
        vehicle frame. Past the goal they repeat the goal."""
        offsets = self._offsets.get((n, spacing))
        if offsets is None:
            offsets = self._offsets[(n, spacing)] = spacing * np.arange(1, n + 1)
        pts = self.point_at(s + offsets)
        return to_vehicle_frame(pts, position, yaw)


def to_vehicle_frame(points: np.ndarray, position: np.ndarray, yaw: float) -> np.ndarray:
    """World (x, y) points -> (x forward, y right) relative to a vehicle at ``position`` facing ``yaw``."""
    d = np.asarray(points, dtype=np.float64) - np.asarray(position, dtype=np.float64)[:2]
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c], axis=1)
