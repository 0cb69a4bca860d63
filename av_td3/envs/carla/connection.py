"""How a CarlaDrivingEnv holds its server: connect (load the map, synchronous mode, its own Traffic
Manager), check the route against the map, reconnect with backoff after a failure, and give the server
back as found when the last env of this process leaves it. A mixin of ``CarlaDrivingEnv`` (env.py): it
reads the env's ``cfg``, ``ports`` and ``role`` and sets its client, world, map and Traffic Manager."""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from av_td3.envs.carla import share as shared
from av_td3.envs.carla.client import connect, map_basename
from av_td3.envs.carla.errors import CarlaConnectionError, CarlaError, SensorTimeout, start_server_hint
from av_td3.envs.carla.routes import map_offsets
from av_td3.envs.carla.traffic import four_wheeled

log = logging.getLogger("av_td3.envs.carla.env")

MAP_LOAD_TIMEOUT = 60.0  # s; loading a map takes far longer than an ordinary RPC
MAX_RECONNECT_DELAY = 60.0  # s, the cap of the doubling reconnect delay
ROUTE_TOLERANCE = 1.0  # m from the map's lane centres before the route file earns a warning
ROUTE_CHECK_STEP = 5.0  # m between the route points checked against the map


def is_sim_failure(e: BaseException) -> bool:
    """Failures a reconnect can fix: CARLA raises RuntimeError for timeouts and RPC errors."""
    return isinstance(e, (RuntimeError, SensorTimeout)) and not isinstance(e, (NotImplementedError,
                                                                                RecursionError))


class ServerConnection:
    def _connect(self) -> None:
        cfg, carla = self.cfg, self._carla
        self._client = connect(self.ports.host, self.ports.port, cfg.timeout)
        self._client.set_timeout(MAP_LOAD_TIMEOUT)
        try:
            world = self._client.get_world()
            if self._share is None:  # first connection: remember the settings to restore at close
                self._share = shared.join((self.ports.host, self.ports.port), self, world.get_settings())
            carla_map = world.get_map()  # downloads and parses the OpenDRIVE: once per connection
            if map_basename(carla_map.name) != cfg.map:
                log.info("loading %s on %s:%d", cfg.map, self.ports.host, self.ports.port)
                world = self._client.load_world(cfg.map)  # also resets the settings to asynchronous
                carla_map = world.get_map()
            self._world, self._map = world, carla_map
            # TM first, then the world: a synchronous world with an asynchronous TM freezes the traffic.
            try:
                self._tm = self._client.get_trafficmanager(self.ports.tm_port)
            except RuntimeError as e:
                if "bind" not in str(e).lower():
                    raise
                raise CarlaError(
                    f"the Traffic Manager port {self.ports.tm_port} is in use by another process ({e}); set "
                    f"env.traffic_manager_port (the base port) or env.port_stride (the spacing per job) so "
                    f"that parallel jobs' ports do not meet") from None
            self._tm.set_synchronous_mode(True)
            self._tm_idle = False
            settings = world.get_settings()
            if not settings.synchronous_mode or settings.fixed_delta_seconds != cfg.fixed_delta_seconds:
                settings.synchronous_mode = True
                settings.fixed_delta_seconds = cfg.fixed_delta_seconds
                # 0.9.16's apply_settings ticks internally: after a map load that first tick can take
                # as long as the load, so the long timeout holds until it has returned.
                world.apply_settings(settings)
        finally:
            self._client.set_timeout(cfg.timeout)
        library = world.get_blueprint_library()
        try:
            self._ego_bp = library.find(cfg.ego_blueprint)
        except (IndexError, RuntimeError):
            raise CarlaError(f"env.ego_blueprint: this server has no {cfg.ego_blueprint!r}") from None
        self._npc_bps = four_wheeled(library.filter("vehicle.*"))
        self._sensor_bps = {name: library.find(name) for name in (
            "sensor.camera.rgb", "sensor.other.collision", "sensor.other.lane_invasion",
            "sensor.other.obstacle")}
        self._spawn_points = self._map.get_spawn_points()
        if not self._route_checked:
            self._check_route()

    def _check_route(self) -> None:
        """Warn when the route file does not lie on this map's lanes (a wrong file or map): too far
        from a lane centre, or running against the lane's direction outside a junction."""
        self._route_checked = True
        offsets = map_offsets(self.route, self._map, step=ROUTE_CHECK_STEP)
        worst = int(np.argmax(offsets[:, 0]))
        against = offsets[:, 1] * (1.0 - offsets[:, 2])  # junction lanes cross the route: not checked
        if offsets[worst, 0] > ROUTE_TOLERANCE or against.max() > math.radians(90):
            log.warning("the route (%s) is up to %.2f m from %s's lane centres (at %.0f m along it) and "
                        "up to %.0f deg off their direction; check env.route_file / env.map",
                        self.cfg.route_file or "town01_route.csv", offsets[worst, 0], self.cfg.map,
                        worst * ROUTE_CHECK_STEP, math.degrees(against.max()))

    def _recover(self, error: BaseException, rebuild: bool) -> None:
        """Reconnect (and with ``rebuild`` spawn a fresh episode) or raise CarlaConnectionError after
        ``max_reconnects`` consecutive failures."""
        while True:
            self._failures += 1
            if self._failures > self.cfg.max_reconnects:
                raise CarlaConnectionError(
                    f"lost the CARLA server at {self.ports.host}:{self.ports.port} and "
                    f"{self.cfg.max_reconnects} reconnects in a row failed (last error: {error}). "
                    f"{start_server_hint(self.ports.port)}") from error
            self.reconnects += 1
            delay = min(self.cfg.reconnect_delay * 2 ** (self._failures - 1), MAX_RECONNECT_DELAY)
            log.warning("CARLA %s env at %s: %s: %s; reconnect %d of %d in %.1f s (%d so far)", self.role,
                        self.ports, type(error).__name__, error, self._failures, self.cfg.max_reconnects,
                        delay, self.reconnects)
            time.sleep(delay)
            try:
                self._reconnect()
                if rebuild:
                    self._build_episode(int(self.np_random.integers(2**31 - 1)))
                log.info("CARLA %s env reconnected to %s", self.role, self.ports)
                return
            except CarlaConnectionError as e:
                error = e
            except Exception as e:
                if not is_sim_failure(e):
                    raise
                error = e

    def _reconnect(self) -> None:
        self._stop_sensors()
        if self._tm is not None:
            try:  # drop the old TM from this process, else the new client would reuse it
                self._tm.shut_down()
            except Exception as e:
                log.debug("traffic manager shut-down failed: %s", e)
        # The old ids may name other actors on a restarted server: only the tagged sweep is safe.
        self._ego, self._sensors, self._npc_ids, self._parked = None, [], [], None
        self._client = self._world = self._tm = None
        self._connect()
        self._sweep_tagged()

    def _release_server(self) -> None:
        last = shared.leave(self._share, self) if self._share is not None else False
        if self._tm is not None:
            try:
                if last:  # the world turns asynchronous below; a synchronous TM would then stall
                    self._tm.set_synchronous_mode(False)
            except Exception as e:
                log.debug("traffic manager: %s", e)
        if last and self._world is not None:
            settings = self._share.original_settings
            if settings.synchronous_mode:
                # Found synchronous: most likely left so by a crashed run. Restored as found, nobody would
                # tick the world and the server would freeze; asynchronous is what a fresh server runs.
                log.warning("CARLA %s env: the world was in synchronous mode when this run connected; "
                            "leaving it asynchronous", self.role)
                settings.synchronous_mode = False
            try:  # no env of this process uses the world any more: give it back as found
                self._world.apply_settings(settings)
            except Exception as e:
                log.warning("CARLA %s env: could not restore the world settings: %s", self.role, e)
        if self._tm is not None:
            try:
                self._tm.shut_down()
            except Exception as e:
                log.debug("traffic manager shut-down failed: %s", e)
