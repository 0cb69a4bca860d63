"""Importing the CARLA client and connecting to a server, with errors that say what to do."""

from __future__ import annotations

import logging
import platform
import sys
from types import ModuleType

from av_td3.envs.carla.errors import CarlaConnectionError, CarlaNotInstalledError, start_server_hint

log = logging.getLogger(__name__)

CARLA_VERSION = "0.9.16"


def import_carla() -> ModuleType:
    """The ``carla`` module, or a CarlaNotInstalledError naming the package and the platforms it has."""
    try:
        import carla
    except ImportError as e:
        raise CarlaNotInstalledError(
            f"env=carla needs the CARLA {CARLA_VERSION} Python client: pip install carla=={CARLA_VERSION} "
            "(wheels exist for x86_64 Linux and Windows, CPython 3.10-3.12; this is "
            f"{platform.system()} {platform.machine()}, CPython {sys.version_info.major}."
            f"{sys.version_info.minor}). Use env=highway where it cannot be installed.") from e
    return carla


def no_server_message(host: str, port: int, timeout: float, where: str = "env.host/env.port") -> str:
    """``where``: how the caller sets host and port (the run config's keys, or carla-check's flags)."""
    return (f"no CARLA server at {host}:{port} (timed out after {timeout:.1f} s). "
            f"{start_server_hint(port)} -- or point {where} (CARLA_HOST/CARLA_PORT) at a "
            "running one; `av-td3 carla-check` tests a server.")


def connect(host: str, port: int, timeout: float, where: str = "env.host/env.port"):
    """A ``carla.Client`` that has answered once (its version), or CarlaConnectionError within ``timeout``.

    ``carla.Client()`` itself never fails; the first RPC is what times out when no server listens."""
    carla = import_carla()
    client = carla.Client(host, port)
    client.set_timeout(timeout)
    try:
        server_version = client.get_server_version()
    except RuntimeError as e:
        raise CarlaConnectionError(no_server_message(host, port, timeout, where)) from e
    client_version = client.get_client_version()
    if server_version != client_version:
        # The RPC protocol changes between releases; a mismatch often works until it does not.
        log.warning("CARLA server %s at %s:%d differs from the client %s", server_version, host, port,
                    client_version)
    return client


def map_basename(name: str) -> str:
    """'Carla/Maps/Town01' -> 'Town01' (World.get_map().name carries the package path)."""
    return name.rstrip("/").rsplit("/", 1)[-1]
