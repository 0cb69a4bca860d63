"""The route file: (x, y, target_speed) rows in CARLA's world frame, loaded into one densified Route.

``town01_route.csv`` is SPEC's reference route: ~264 m west along Town01's bottom road, one 90-degree
right turn at the T-junction with the x~90 road, then north to the goal. Its lane centres come from
Town01's OpenDRIVE (see the file's header); ``map_offsets`` checks them against a live server's map.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from av_td3.envs.carla.client import import_carla
from av_td3.envs import route_file
from av_td3.envs.route import Route

DEFAULT_ROUTE = Path(__file__).with_name("town01_route.csv")


def load_route(path: str | Path | None = None, spacing: float = 0.5) -> Route:
    """A route file (envs/route_file.py; None: the packaged Town01 route) as one Route densified to
    ``spacing`` metres."""
    return route_file.load_route(path or DEFAULT_ROUTE, spacing)


def map_offsets(route: Route, carla_map, step: float = 5.0) -> np.ndarray:
    """For route points every ``step`` m: (distance to the nearest driving lane's centre, heading
    difference to that lane in rad, 1.0 inside a junction else 0.0). Large distances, or headings
    opposite to the lane outside junctions, mean the route file does not fit this map."""
    carla = import_carla()
    out = []
    for s in np.arange(0.0, route.length + 1e-9, step):
        x, y = route.point_at(s)
        wp = carla_map.get_waypoint(carla.Location(x=float(x), y=float(y), z=0.0), project_to_road=True,
                                    lane_type=carla.LaneType.Driving)
        loc = wp.transform.location
        yaw_diff = math.remainder(math.radians(wp.transform.rotation.yaw) - route.yaw_at(s), 2 * math.pi)
        out.append((math.hypot(loc.x - x, loc.y - y), abs(yaw_diff), float(bool(wp.is_junction))))
    return np.array(out)
