"""Envs of one run on one CARLA server take turns (the train env and the eval env): the one that is
not driving parks its ego high above its place with physics off, removes its NPCs, stops its sensors and
sets its Traffic Manager asynchronous, so the world holds one episode's traffic, one synchronous Traffic
Manager (CARLA's rule) and only the driving env ticks it. Envs of one process switch through
share.activate; envs in separate worker processes through envs/worker.py's Turns, which calls
``suspend``. A mixin of ``CarlaDrivingEnv`` (env.py)."""

from __future__ import annotations

import logging

import numpy as np

from av_td3.envs.carla import share as shared
from av_td3.envs.carla.connection import is_sim_failure
from av_td3.envs.carla.traffic import destroy_actors, spawn_npcs

log = logging.getLogger("av_td3.envs.carla.env")

PARK_HEIGHT = 300.0  # m above its place a suspended env's ego waits, out of every sensor's way


class TakingTurns:
    def suspend(self) -> None:
        """Another env on this server is about to drive (called across processes by envs/worker.py's
        Turns; envs of one process do it through share.activate): see ``_suspend``."""
        if self._world is not None:
            self._suspend()

    def _activate(self, resume: bool) -> None:
        other = shared.activate(self._share, self)
        if other is not None:
            other._suspend()
        if self._tm_idle:  # suspended earlier: its Traffic Manager drives again
            self._tm.set_synchronous_mode(True)
            self._tm_idle = False
        if resume and self._parked is not None:
            self._resume()

    def _suspend(self) -> None:
        """Another env on this server is about to drive: park the ego high above its place (physics
        off) and remove the NPCs, which would double the other env's traffic. ``_resume`` undoes it."""
        if self._closed or self._ego is None or self._parked is not None:
            return
        carla = self._carla
        try:
            t = self._ego.get_transform()
            self._parked = (t, self._ego.get_velocity(), self._ego.get_angular_velocity())
            destroy_actors(carla, self._client, self._npc_ids)
            self._npc_ids = []
            self._ego.set_simulate_physics(False)
            self._ego.set_transform(carla.Transform(
                carla.Location(x=t.location.x, y=t.location.y, z=t.location.z + PARK_HEIGHT), t.rotation))
            self._stop_sensors()  # a parked ego's camera and sensors would stream every tick for nothing
            # Only one Traffic Manager of a server may be synchronous (CARLA's docs); the idle env's
            # would also run its full cycle of RPCs every tick. It is synchronous again in _activate.
            self._tm.set_synchronous_mode(False)
            self._tm_idle = True
        except Exception as e:
            if not is_sim_failure(e):
                raise
            log.warning("CARLA %s env: could not suspend (%s); its next step will reconnect", self.role, e)

    def _resume(self) -> None:
        carla, cfg = self._carla, self.cfg
        transform, velocity, angular = self._parked
        self._parked = None
        self._ego.set_transform(transform)
        self._ego.set_simulate_physics(True)
        self._ego.set_target_velocity(velocity)
        self._ego.set_target_angular_velocity(angular)
        self._ego.apply_control(self._control or carla.VehicleControl())
        for sensor, callback in zip(self._sensors, self._callbacks):
            sensor.listen(callback)
        here = np.array([transform.location.x, transform.location.y])
        self._npc_ids = spawn_npcs(carla, self._client, self._npc_bps, self._spawn_points, here,
                                   self.npc_vehicles, cfg.npc_min_distance, self.ports.tm_port,
                                   self.np_random, self._tag + "npc")
        snapshot = self._world.get_snapshot()
        for events in (self._collisions, self._lane_invasions, self._obstacles):
            events.take(snapshot.frame)  # events of the parked ego are not this episode's
        self._tracker.elapsed = snapshot.timestamp.elapsed_seconds  # dt spans one tick, not the pause
