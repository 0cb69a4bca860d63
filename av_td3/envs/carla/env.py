"""CarlaDrivingEnv: SPEC's task in CARLA 0.9.16 (Town01, synchronous at 20 Hz), with the same
observation / action / info contract as the embedded highway env.

Lifecycle:
- construction connects (or raises CarlaConnectionError naming host:port within the timeout), loads the
  map if needed, switches the world to synchronous mode and creates this env's own Traffic Manager;
- ``reset`` destroys the previous episode's actors and spawns the ego at the route start, its sensors
  and the scenario's NPCs (seeded);
- ``step`` applies the control, ticks once (with a timeout), takes the camera image of exactly that
  frame and scores the step with the shared reward;
- a tick or sensor that times out, or a server that dies, triggers a reconnect and a fresh episode,
  then ``step`` raises CarlaEpisodeLost (the trainer drops the transition and calls ``reset``); after
  ``max_reconnects`` failures in a row it raises CarlaConnectionError;
- ``close`` (idempotent; also on garbage collection and as a context manager) destroys every actor
  the env spawned and, when the last env of this process on the server closes, restores the world
  settings it found.

Here: the Gymnasium API and the episodes (spawn, advance, sense, tear down). The connection and its
recovery are in connection.py, taking turns with another env on the server in parking.py (mixins).
"""

from __future__ import annotations

import logging
import math
import sys

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from av_td3.config.env import CarlaEnvConfig
from av_td3.envs.carla.client import connect, import_carla
from av_td3.envs.carla.connection import ServerConnection, is_sim_failure
from av_td3.envs.carla.errors import CarlaConnectionError, CarlaEpisodeLost, CarlaError
from av_td3.envs.carla.ports import resolve_ports
from av_td3.envs.carla.parking import TakingTurns
from av_td3.envs.carla.routes import load_route
from av_td3.envs.carla.sensors import EventLog, FrameMatcher, bgra_to_gray, bgra_to_rgb, nearest_obstacle
from av_td3.envs.carla.traffic import destroy_actors, spawn_npcs
from av_td3.envs.carla.vehicle import EgoState, Tracker, measure, to_vehicle_control
from av_td3.envs.contract import ACTION_SPACE, IMAGE, VECTOR, FrameStack, bound_draw, observation_space
from av_td3.envs.observation import observation_vector
from av_td3.envs.reward import compute_reward

log = logging.getLogger(__name__)

SETTLE_TICKS = 10  # 0.5 s after spawning: the ego drops onto the road, the camera renders real frames
SPAWN_HEIGHT = 0.5  # m above the road surface (at road level the spawn collides with the ground)
SPAWN_ATTEMPTS = 3  # ticks to wait for something standing on the route start to move away
TAG = "av_td3"  # role_name prefix of every actor an env spawns (see _tag)


class CarlaDrivingEnv(ServerConnection, TakingTurns, gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, cfg: CarlaEnvConfig, npc_vehicles: int, role: str = "train", job_num: int = 0,
                 render_mode: str | None = None):
        self._closed = True  # until connected: close() and __del__ have nothing to undo
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if npc_vehicles < 0:
            raise ValueError(f"npc_vehicles must be >= 0, got {npc_vehicles}")
        self.cfg, self.role, self.job_num, self.render_mode = cfg, role, int(job_num), render_mode
        self.npc_vehicles = int(npc_vehicles)
        self.ports = resolve_ports(cfg.host, cfg.port, cfg.traffic_manager_port, cfg.port_stride,
                                   self.job_num, role)
        self.route = load_route(cfg.route_file or None)
        self._previous_action = np.zeros(2, dtype=np.float32)  # env.vector=minimal reads it
        self.observation_space = observation_space(cfg)
        self.action_space = ACTION_SPACE
        self.reconnects = 0  # reconnect attempts over the env's life (each one logged)
        self._failures = 0  # consecutive failures since the last good step / reset
        # Every actor carries this role_name: a sweep finds them when a batch reply was lost, and a
        # resumed job removes what its crashed predecessor (same TM port) left behind.
        self._tag = f"{TAG}:{self.ports.tm_port}:"
        self._carla = import_carla()
        self._client = self._world = self._map = self._tm = self._share = None
        self._ego = None
        self._sensors: list = []
        self._callbacks: list = []  # each sensor's listen() callback, to listen again after a suspend
        self._npc_ids: list[int] = []
        self._parked = None  # (transform, velocity, angular velocity) while suspended
        self._tm_idle = False  # its Traffic Manager set asynchronous by _suspend
        self._control = None  # last VehicleControl applied (restored on resume)
        self._camera = FrameMatcher("camera")
        self._collisions, self._lane_invasions, self._obstacles = EventLog(), EventLog(), EventLog()
        self._stack = FrameStack(cfg.frame_stack, cfg.image_height, cfg.image_width)
        self._tracker: Tracker | None = None
        self._steps = 0
        self._last_rgb = None
        self._route_checked = False
        self._closed = False
        try:
            self._connect()
            self._sweep_tagged()  # leftovers of an earlier run of this job
        except BaseException:
            self.close()
            raise

    # --- gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._check_open()
        episode_seed = int(self.np_random.integers(2**31 - 1))  # NPC choices and the Traffic Manager
        if self._world is None:  # an earlier CarlaConnectionError gave up: try afresh
            self._failures = 0
            self._recover(CarlaConnectionError(f"not connected to {self.ports}"), rebuild=False)
        while True:
            try:
                self._activate(resume=False)
                self._teardown_episode()
                obs = self._build_episode(episode_seed)
                break
            except Exception as e:
                if not is_sim_failure(e):
                    raise
                self._recover(e, rebuild=False)
        self._failures = 0
        return obs, {"npc_vehicles": len(self._npc_ids), "traffic_manager_port": self.ports.tm_port}

    def step(self, action):
        self._check_open()
        if self._ego is None:
            raise ResetNeeded("call reset() before step()")
        try:
            self._activate(resume=True)
            q, obs = self._advance(np.asarray(action, dtype=np.float32))
        except Exception as e:
            if not is_sim_failure(e):
                raise
            steps = self._steps
            self._recover(e, rebuild=True)
            raise CarlaEpisodeLost(f"CARLA episode lost at step {steps} ({e}); reconnected to "
                                   f"{self.ports} and rebuilt the episode: call reset()") from e
        self._failures = 0
        self._steps += 1
        reward, components = compute_reward(q, self.cfg.reward)
        terminated = bool(q.collision or q.off_road or q.route_completed)
        truncated = not terminated and self._steps >= self.cfg.max_episode_steps
        info = q.as_info() | {"reward_components": components, "is_success": bool(q.route_completed)}
        return obs, float(reward), terminated, truncated, info

    def render(self):
        return self._last_rgb if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self._close(reconnect=True)

    def __del__(self):
        if sys.is_finalizing():  # the carla module may already be torn down
            return
        try:
            self._close(reconnect=False)  # no network waits inside the garbage collector
        except Exception:
            pass

    def _close(self, reconnect: bool) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            if reconnect and self._client is None and self._share is not None:
                # Reconnecting failed earlier: if the server is back, its actors are still ours to remove.
                try:
                    self._client = connect(self.ports.host, self.ports.port, self.cfg.timeout)
                    self._world = self._client.get_world()
                except CarlaConnectionError:
                    pass
            if self._client is not None:
                try:
                    self._teardown_episode(sweep=True)
                except Exception as e:  # a dead server: nothing left to destroy there
                    log.warning("CARLA %s env: clean-up at close failed: %s", self.role, e)
            self._release_server()
        finally:
            self._client = self._world = self._map = self._tm = self._ego = None
            self._sensors, self._npc_ids = [], []

    # --- episodes -----------------------------------------------------------------------------------
    def _build_episode(self, seed: int):
        carla, cfg = self._carla, self.cfg
        rng = np.random.default_rng(seed)
        self._bound_rng = np.random.default_rng([seed, 1])  # env.marking_bound_probability's draws
        self._tm.set_random_device_seed(seed)
        self._ego = self._spawn_ego()
        extent = self._ego.bounding_box.extent
        self._half_size = (float(extent.x), float(extent.y))  # the footprint marking_overlap measures
        self._spawn_sensors(self._ego)
        self._npc_ids = spawn_npcs(carla, self._client, self._npc_bps, self._spawn_points, self.route.start,
                                   self.npc_vehicles, cfg.npc_min_distance, self.ports.tm_port, rng,
                                   self._tag + "npc")
        self._control = carla.VehicleControl(brake=1.0)
        self._ego.apply_control(self._control)
        for _ in range(SETTLE_TICKS):
            frame = self._world.tick(cfg.timeout)
        image = self._camera.wait(frame, cfg.timeout) if cfg.camera != "none" else None
        ego = self._ego_state()
        for events in (self._collisions, self._lane_invasions, self._obstacles):
            events.take(frame)  # whatever happened while settling is not the policy's doing
        self._tracker = Tracker.start(self.route, ego)
        q, proj, _ = measure(self.route, ego, self._tracker, cfg, collision=False, lane_invasion=False,
                             obstacle_distance=math.inf, obstacle_speed=0.0, half_size=self._half_size)
        self._steps = 0
        self._stack.reset()
        self._previous_action = np.zeros(2, dtype=np.float32)
        return self._observation(image, ego, q, proj)

    def _advance(self, action: np.ndarray):
        cfg = self.cfg
        self._control = to_vehicle_control(action)
        self._ego.apply_control(self._control)
        self._previous_action = np.clip(action, -1.0, 1.0).astype(np.float32)
        frame = self._world.tick(cfg.timeout)
        image = self._camera.wait(frame, cfg.timeout) if cfg.camera != "none" else None
        ego = self._ego_state()
        obstacle_distance, other = nearest_obstacle(self._obstacles.take(frame), frame)
        q, proj, self._tracker = measure(
            self.route, ego, self._tracker, cfg,
            collision=bool(self._collisions.take(frame)),
            lane_invasion=bool(self._lane_invasions.take(frame)),
            obstacle_distance=obstacle_distance, obstacle_speed=self._speed_along(other, ego),
            half_size=self._half_size, bound_ends=bound_draw(cfg.marking_bound_probability, self._bound_rng))
        return q, self._observation(image, ego, q, proj)

    def _observation(self, image, ego: EgoState, q, proj) -> dict[str, np.ndarray]:
        cfg = self.cfg
        obs = {VECTOR: observation_vector(cfg, self.route, q, proj, ego.position, ego.yaw, self._previous_action)}
        if image is not None:
            gray = bgra_to_gray(image.raw_data, image.width, image.height, cfg.image_height, cfg.image_width)
            if self.render_mode == "rgb_array":
                self._last_rgb = bgra_to_rgb(image.raw_data, image.width, image.height)
            obs[IMAGE] = self._stack.push(gray)
        return obs

    def _ego_state(self) -> EgoState:
        snapshot = self._world.get_snapshot()
        actor = snapshot.find(self._ego.id)
        if actor is None:
            raise RuntimeError(f"the ego vehicle {self._ego.id} is gone from the simulation")
        return EgoState.from_snapshot(actor, snapshot.timestamp.elapsed_seconds)

    def _speed_along(self, other, ego: EgoState) -> float:
        """The obstacle's velocity along the ego's heading (0 for static objects)."""
        if other is None:
            return 0.0
        actor = self._world.get_snapshot().find(other.id)
        if actor is None:
            return 0.0
        v = actor.get_velocity()
        return float(np.dot([v.x, v.y], ego.forward))

    def _spawn_ego(self):
        carla = self._carla
        x, y = (float(v) for v in self.route.start)
        road = self._map.get_waypoint(carla.Location(x=x, y=y, z=0.0))
        transform = carla.Transform(
            carla.Location(x=x, y=y, z=road.transform.location.z + SPAWN_HEIGHT),
            carla.Rotation(yaw=math.degrees(self.route.start_yaw())))
        self._ego_bp.set_attribute("role_name", self._tag + "ego")
        for _ in range(SPAWN_ATTEMPTS):
            ego = self._world.try_spawn_actor(self._ego_bp, transform)
            if ego is not None:
                return ego
            self._world.tick(self.cfg.timeout)
        raise CarlaError(f"cannot spawn the ego at the route start ({x:.1f}, {y:.1f}): another actor "
                         "stands there (one this env did not spawn)")

    def _spawn_sensors(self, ego) -> None:
        carla, cfg = self._carla, self.cfg
        bps = self._sensor_bps
        for bp in bps.values():
            if bp.has_attribute("role_name"):
                bp.set_attribute("role_name", self._tag + "sensor")
        camera_bp = bps["sensor.camera.rgb"]
        camera_bp.set_attribute("image_size_x", str(cfg.camera_width))
        camera_bp.set_attribute("image_size_y", str(cfg.camera_height))
        camera_bp.set_attribute("fov", str(cfg.camera_fov))
        obstacle_bp = bps["sensor.other.obstacle"]
        obstacle_bp.set_attribute("distance", str(cfg.obstacle_range))
        # Vehicles and walkers only: looking straight ahead, the static option reports the buildings at
        # the corner throughout a correctly driven turn.
        obstacle_bp.set_attribute("only_dynamics", "True")
        front = ego.bounding_box.location.x + ego.bounding_box.extent.x  # distances from the bumper
        mounts = {"sensor.camera.rgb": carla.Transform(carla.Location(x=cfg.camera_x, z=cfg.camera_z),
                                                       carla.Rotation(pitch=cfg.camera_pitch)),
                  "sensor.other.collision": carla.Transform(carla.Location()),
                  "sensor.other.lane_invasion": carla.Transform(carla.Location()),
                  "sensor.other.obstacle": carla.Transform(carla.Location(x=front, z=1.0))}
        # The callbacks capture the queues, not self: a sensor thread must not keep the env alive.
        camera, collisions, lanes, obstacles = (self._camera, self._collisions, self._lane_invasions,
                                                self._obstacles)
        callbacks = {
            "sensor.camera.rgb": lambda im: camera.put(im.frame, im),
            "sensor.other.collision": lambda ev: collisions.put(ev.frame, ev.other_actor.type_id),
            "sensor.other.lane_invasion": lambda ev: lanes.put(ev.frame, len(ev.crossed_lane_markings)),
            "sensor.other.obstacle": lambda ev: obstacles.put(ev.frame, (ev.distance, ev.other_actor))}
        for queue in (camera, collisions, lanes, obstacles):
            queue.clear()
        self._callbacks = []
        for name, bp in bps.items():
            if name == "sensor.camera.rgb" and cfg.camera == "none":
                continue
            sensor = self._world.spawn_actor(bp, mounts[name], attach_to=ego)
            self._sensors.append(sensor)  # tracked before listen(): a failure below still destroys it
            self._callbacks.append(callbacks[name])
            sensor.listen(callbacks[name])

    def _stop_sensors(self) -> None:
        for sensor in self._sensors:
            try:
                sensor.stop()
            except Exception as e:  # a dead server; the actor goes with the episode
                log.debug("sensor stop failed: %s", e)

    def _teardown_episode(self, sweep: bool = False) -> None:
        """Destroy this env's actors (sensors first) in one batch; ``sweep`` also destroys any actor
        carrying this env's tag that the bookkeeping missed."""
        self._stop_sensors()
        ego = [self._ego.id] if self._ego is not None else []
        ids = [s.id for s in self._sensors] + ego + self._npc_ids
        self._ego, self._sensors, self._npc_ids, self._parked = None, [], [], None
        destroy_actors(self._carla, self._client, ids)
        if sweep:
            self._sweep_tagged()

    def _sweep_tagged(self) -> None:
        if self._world is None:
            return
        mine = [a for a in self._world.get_actors()
                if str(a.attributes.get("role_name", "")).startswith(self._tag)]
        mine.sort(key=lambda a: not a.type_id.startswith("sensor."))  # sensors before their vehicle
        ids = [a.id for a in mine]
        if ids:
            log.info("CARLA %s env: destroying %d leftover actors tagged %s", self.role, len(ids), self._tag)
            destroy_actors(self._carla, self._client, ids)

    def _check_open(self) -> None:
        if self._closed:
            raise CarlaError("this CarlaDrivingEnv is closed")
