"""Route files: CSV polylines of (x, y, target_speed) in a left-handed world frame (CARLA's: y to the
right of x), metres and m/s, ``#`` lines are comments. The CARLA env drives them in its map; the embedded
simulator builds its road along them (envs/roads.py). A bad file gets one line that names the file,
the line and the problem (``RouteFileError``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from av_td3.envs.route import Route

COLUMNS = ("x", "y", "target_speed")
ROUTES_DIR = Path(__file__).with_name("routes")  # the packaged route set (envs/routes/)


class RouteFileError(ValueError):
    """A route file is missing or malformed; the message reads ``path:line: problem``."""


def resolve(name: str | Path) -> Path:
    """A route file by path, or by name in the packaged route set."""
    path = Path(name).expanduser()
    if not path.exists() and not path.is_absolute() and (ROUTES_DIR / path).exists():
        return ROUTES_DIR / path
    return path


def read_points(name: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(xy (N, 2), target_speed (N,)) of a route file, repeated points dropped."""
    path = resolve(name)
    if not path.is_file():
        raise RouteFileError(f"{path}: no such route file (a path, or a name in {ROUTES_DIR})")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RouteFileError(f"{path}: cannot read it ({e})") from None
    header, rows = None, []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        cells = [c.strip() for c in text.split(",")]
        if header is None:
            missing = [c for c in COLUMNS if c not in cells]
            if missing:
                raise RouteFileError(f"{path}:{number}: the header needs the columns {', '.join(COLUMNS)} "
                                     f"(missing {', '.join(missing)}), got {text!r}")
            header = [cells.index(c) for c in COLUMNS]
            width = len(cells)
            continue
        if len(cells) != width:
            raise RouteFileError(f"{path}:{number}: {len(cells)} values, the header has {width}")
        try:
            values = [float(cells[i]) for i in header]
        except ValueError:
            raise RouteFileError(f"{path}:{number}: not a number in {text!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise RouteFileError(f"{path}:{number}: non-finite value in {text!r}")
        if values[2] < 0:
            raise RouteFileError(f"{path}:{number}: target_speed must be >= 0, got {values[2]:g}")
        if rows and math.hypot(values[0] - rows[-1][1][0], values[1] - rows[-1][1][1]) < 1e-6:
            continue  # a repeated point
        rows.append((number, values))
    if header is None:
        raise RouteFileError(f"{path}:{len(lines)}: no header line ({','.join(COLUMNS)})")
    if len(rows) < 2:
        raise RouteFileError(f"{path}:{len(lines)}: a route needs at least 2 distinct points, got {len(rows)}")
    data = np.array([v for _, v in rows])
    return data[:, :2], data[:, 2]


def load_route(name: str | Path, spacing: float = 0.5) -> Route:
    """A route file as one Route densified to ``spacing`` metres."""
    xy, speed = read_points(name)
    return Route(xy, speed, spacing=spacing)


def route_names(cfg, role: str) -> list[str]:
    """The roads an embedded-simulator env (``HighwayEnvConfig``) of this role drives: the split
    env.routes names for training (env.eval_routes, if set, for any other role), else the one road of
    env.route_file ("" = the built-in road)."""
    split = cfg.eval_routes if role != "train" and cfg.eval_routes else cfg.routes
    return list(cfg.route_splits[split]) if split else [cfg.route_file]


def eval_routes(env_cfg) -> list[str] | None:
    """The routes evaluation cycles through (episode i on route i mod n), or None where the env drives
    one road of its own (CARLA, Gymnasium tasks, an embedded run on one road)."""
    if not hasattr(env_cfg, "route_splits") or not (env_cfg.routes or env_cfg.eval_routes):
        return None
    return route_names(env_cfg, "eval")
