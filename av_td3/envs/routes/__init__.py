"""The packaged route set: CSV route files (envs/route_file.py) for the embedded simulator, each a
sequence of straights and circular arcs starting at (0, 0) heading +x. ``python -m av_td3.envs.routes``
writes them from ROUTES below; env.route_splits (config/env.py) names the train and test splits.

Each route is a list of pieces: ("S", metres) a straight, ("R" or "L", radius m, degrees) a right or left
arc. Target speeds: TARGET_SPEED, lowered on an arc to what LATERAL_ACCELERATION allows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
TARGET_SPEED = 8.33  # m/s
LATERAL_ACCELERATION = 3.0  # m/s^2 on a route's arcs at their target speed
ARC_POINT_SPACING = 1.0  # m (and at most 5 degrees) between the points written on an arc

ROUTES: dict[str, tuple[str, list[tuple]]] = {
    # train split
    "right_90_r20.csv": ("a right turn of 20 m", [("S", 120), ("R", 20, 90), ("S", 100)]),
    "left_90_r9.csv": ("a junction-like left turn of 9 m", [("S", 150), ("L", 9, 90), ("S", 100)]),
    "s_bend_r30.csv": ("an S-bend: right then left, 30 m", [("S", 80), ("R", 30, 60), ("S", 40), ("L", 30, 60), ("S", 100)]),
    "right_curve_r60.csv": ("a long right curve of 60 m", [("S", 60), ("R", 60, 120), ("S", 80)]),
    "left_hairpin_r15.csv": ("a left hairpin of 15 m", [("S", 100), ("L", 15, 180), ("S", 120)]),
    "chicane_r25.csv": ("a chicane: left, right, left, 25 m", [("S", 60), ("L", 25, 45), ("R", 25, 90), ("L", 25, 45), ("S", 120)]),
    "right_left_r12.csv": ("two junction turns, right then left, 12 m", [("S", 100), ("R", 12, 90), ("S", 60), ("L", 12, 90), ("S", 100)]),
    "long_straight.csv": ("a long straight with a gentle 100 m bend", [("S", 200), ("R", 100, 30), ("S", 100)]),
    # test split
    "left_90_r20.csv": ("a left turn of 20 m", [("S", 140), ("L", 20, 90), ("S", 100)]),
    "right_90_r8.csv": ("a junction-like right turn of 8 m", [("S", 160), ("R", 8, 90), ("S", 90)]),
    "s_bend_r45.csv": ("an S-bend: left then right, 45 m", [("S", 60), ("L", 45, 50), ("S", 30), ("R", 45, 50), ("S", 120)]),
    "left_curve_r80_right_r10.csv": ("a left curve of 80 m, then a right turn of 10 m",
                                     [("S", 60), ("L", 80, 60), ("S", 60), ("R", 10, 90), ("S", 100)]),
    # in no split: added to the train split, it shows whether a policy misses the test split's tight right
    # turns because training never held one that tight (docs/learning.md)
    "left_right_r8.csv": ("two junction turns, left 12 m then right 8 m",
                          [("S", 100), ("L", 12, 90), ("S", 60), ("R", 8, 90), ("S", 100)]),
}


def route_points(pieces: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """(xy, target speed) along the pieces, from (0, 0) heading +x (y to the right, as in CARLA)."""
    x, y, yaw = 0.0, 0.0, 0.0
    points, speeds = [(x, y)], [TARGET_SPEED]
    for piece in pieces:
        if piece[0] == "S":
            x, y = x + piece[1] * math.cos(yaw), y + piece[1] * math.sin(yaw)
            points.append((x, y))
            speeds.append(TARGET_SPEED)
            continue
        kind, radius, degrees = piece
        turn = 1.0 if kind == "R" else -1.0  # a right turn: yaw grows
        cx, cy = x - turn * radius * math.sin(yaw), y + turn * radius * math.cos(yaw)  # centre, on the inside
        sweep = math.radians(degrees)
        n = max(int(math.ceil(max(radius * sweep / ARC_POINT_SPACING, degrees / 5.0))), 2)
        phi0 = math.atan2(y - cy, x - cx)
        speed = min(TARGET_SPEED, math.sqrt(LATERAL_ACCELERATION * radius))
        speeds[-1] = min(speeds[-1], speed)
        for k in range(1, n + 1):
            phi = phi0 + turn * sweep * k / n
            points.append((cx + radius * math.cos(phi), cy + radius * math.sin(phi)))
            speeds.append(speed)
        x, y = points[-1]
        yaw += turn * sweep
    return np.array(points), np.array(speeds)


def write_all(directory: Path = HERE) -> list[Path]:
    out = []
    for name, (what, pieces) in ROUTES.items():
        xy, speed = route_points(pieces)
        length = sum(p[1] if p[0] == "S" else p[1] * math.radians(p[2]) for p in pieces)
        lines = [f"# {what}: {length:.0f} m. Written by `python -m av_td3.envs.routes` from its pieces:",
                 f"# {pieces}", "x,y,target_speed"]
        lines += [f"{px:.4f},{py:.4f},{v:.2f}" for (px, py), v in zip(xy, speed)]
        path = directory / name
        path.write_text("\n".join(lines) + "\n")
        out.append(path)
    return out
