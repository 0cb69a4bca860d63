"""The CARLA env's exceptions. Pure Python (no ``carla`` import), so the trainer can catch them on
machines without the CARLA wheel."""

from __future__ import annotations

from av_td3.envs.errors import EnvFailed, EpisodeLost

DOCKER_IMAGE = "carlasim/carla:0.9.16"


def start_server_hint(port: int) -> str:
    """How to start a server that listens on ``port`` (the RPC port; it also uses port+1 and port+2)."""
    return (f"Start one: docker run --privileged --gpus all --net=host {DOCKER_IMAGE} /bin/bash "
            f"./CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}")


class CarlaError(Exception):
    """Anything the CARLA env cannot recover from by itself."""


class CarlaNotInstalledError(CarlaError, ImportError):
    """The ``carla`` client wheel is missing (or does not exist for this platform)."""


class CarlaConnectionError(CarlaError, EnvFailed, ConnectionError):
    """No CARLA server answered (at start-up), or it was lost and every reconnect attempt failed."""


class CarlaEpisodeLost(CarlaError, EpisodeLost):
    """The simulator failed mid-episode (a tick timed out or the server died); the env has reconnected
    and rebuilt a fresh episode. The transition in flight is gone: drop it, count it, call ``reset()``."""


class SensorTimeout(CarlaError, TimeoutError):
    """A sensor's data for the frame just ticked did not arrive in time (or was skipped)."""
