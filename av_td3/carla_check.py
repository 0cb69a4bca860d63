"""``av-td3 carla-check``: verify a CARLA server before launching a sweep.

Connects, prints the server and client versions and the loaded map, spawns one vehicle and destroys
it. Exit status 0 on success, 2 when no server answers (or the client is not installed), 1 when the
server answered but the check failed. It changes no world settings and loads no map.
"""

from __future__ import annotations

import argparse
import os
import sys

from av_td3.envs.carla.errors import CarlaConnectionError, CarlaNotInstalledError
from av_td3.envs.carla.ports import HOST_VAR, PORT_VAR
from av_td3.helptext import plain

DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TIMEOUT = "127.0.0.1", 2000, 5.0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("carla-check", help="verify a CARLA server (versions, map, one spawn)",
                              description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=None, help=f"server host (default ${HOST_VAR} or {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=None,
                   help=f"server RPC port (default ${PORT_VAR} or {DEFAULT_PORT})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"client timeout in seconds (default {DEFAULT_TIMEOUT})")
    return p


def run(args: argparse.Namespace) -> int:
    host = args.host or os.environ.get(HOST_VAR) or DEFAULT_HOST
    try:
        port = args.port if args.port is not None else int(os.environ.get(PORT_VAR) or DEFAULT_PORT)
    except ValueError:
        print(f"carla-check: {PORT_VAR} must be a port number, got {os.environ[PORT_VAR]!r}", file=sys.stderr)
        return 2
    try:
        from av_td3.envs.carla.client import connect, import_carla

        carla = import_carla()
        client = connect(host, port, args.timeout, where="--host/--port")
    except (CarlaConnectionError, CarlaNotInstalledError) as e:
        print(f"carla-check: {e}", file=sys.stderr)
        return 2
    try:
        print(f"server  {host}:{port}  version {client.get_server_version()}")
        print(f"client  carla {client.get_client_version()}")
        world = client.get_world()
        settings = world.get_settings()
        print(f"map     {world.get_map().name}  (synchronous_mode={settings.synchronous_mode}, "
              f"fixed_delta_seconds={settings.fixed_delta_seconds})")
        vehicle, where = _spawn_one(carla, world)
        print(f"spawn   {vehicle.type_id} (id {vehicle.id}) at ({where.x:.1f}, {where.y:.1f})")
        if not vehicle.destroy():
            print("carla-check: the test vehicle could not be destroyed", file=sys.stderr)
            return 1
        print("destroy ok")
    except RuntimeError as e:  # the server answered once, then failed or timed out
        print(f"carla-check: {host}:{port} answered but the check failed: {e}", file=sys.stderr)
        return 1
    return 0


def _spawn_one(carla, world):
    """A Model 3 at the first free spawn point (a busy server has some points occupied)."""
    try:
        bp = world.get_blueprint_library().find("vehicle.tesla.model3")
    except IndexError:  # 0.9.16's find() raises IndexError for an unknown id
        raise RuntimeError("this server has no vehicle.tesla.model3 blueprint (not a stock CARLA 0.9.16?)") from None
    bp.set_attribute("role_name", "av_td3:carla-check")
    for point in world.get_map().get_spawn_points():
        vehicle = world.try_spawn_actor(bp, point)
        if vehicle is not None:  # (in a synchronous world its own transform updates only on a tick)
            return vehicle, point.location
    raise RuntimeError("no free spawn point for a test vehicle")
