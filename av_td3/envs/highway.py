"""HighwayDrivingEnv: SPEC's task on highway-env's road API, no CARLA server needed.

Same contract as the CARLA env (``contract.py``): observation ``image`` (uint8 grayscale frames, oldest
first, zeros after reset) + ``vector`` (53 floats), action [steer, throttle_brake], ``info`` =
``StepQuantities.as_info()`` + ``reward_components`` + ``is_success``, reward from ``reward.py``.

World (left-handed like CARLA: y right of x): a two-lane road with both lanes in the driving direction,
``straight_length`` m west from (straight_length, 0) to (0, 0), a 90-degree right turn of
``turn_radius`` (centre (0, -turn_radius)), then ``exit_length`` m north (-y) to the goal. Lane 0 is
the left lane, lane 1 the right one; the route is the right lane's centre line and the ego starts on it,
standing. NPCs are highway-env IDM vehicles (with MOBIL lane changes) on both lanes.

Per step (dt = 1 / simulation_frequency): the ego's action is set, every NPC decides, highway-env steps
all vehicles and their collisions, NPCs past the goal leave, then the quantities are measured:
- lane invasion: the ego's footprint starts to cross a marking of its lane (the divider or the road
  edge): some point of its outline is more than lane_width / 2 from the route on this step and not the
  previous (``Route.footprint_overlap``; with env.marking_geometry=lane_frame, |lat| + (W/2)|cos he| +
  (L/2)|sin he| > lane_width / 2, the box in a straight lane);
- collision (highway-env's ``crashed``) and route completion (within ``goal_radius`` of the goal) are
  reported on the step they happen; both end the episode, as does off road (|lat| > max_lateral_deviation,
  or the footprint past max_marking_overlap, ``contract.off_road``);
- obstacle: the nearest NPC ahead along the route whose lateral offset from the ego is less than half
  a lane width (the ego's lane corridor), within ``obstacle_range``; distance bumper to bumper, TTC =
  distance / closing speed (inf when not closing), as the CARLA env measures them.

The image is highway-env's pygame rendering (road surface, markings, vehicles), turned so the ego's
heading points up (``camera.py``).
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # offscreen rendering, no window or display needed

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium.error import ResetNeeded  # noqa: E402
from highway_env.road.road import Road, RoadNetwork  # noqa: E402
from highway_env.vehicle.behavior import IDMVehicle  # noqa: E402
from highway_env.vehicle.graphics import VehicleGraphics  # noqa: E402
from highway_env.vehicle.kinematics import Vehicle  # noqa: E402

from av_td3.config.env import HighwayEnvConfig  # noqa: E402
from av_td3.envs.contract import (ACTION_SPACE, IMAGE, MAX_STEER_RAD, VECTOR, FrameStack,  # noqa: E402
                                  StepQuantities, bound_draw, observation_space, off_road,
                                  split_action)
from av_td3.envs.observation import observation_vector  # noqa: E402
from av_td3.envs.reward import compute_reward  # noqa: E402
from av_td3.envs.roads import RIGHT_LANE, builtin_road, road_from_file  # noqa: E402
from av_td3.envs.route import Route, wrap_angle  # noqa: E402
from av_td3.envs.route_file import route_names  # noqa: E402
from av_td3.envs.camera import TopDownCamera  # noqa: E402
from av_td3.envs.dashcam import DashCamera  # noqa: E402
from av_td3.envs.traffic import TrafficNetwork, TrafficRoad, TrafficVehicle  # noqa: E402

RANDOM_START_MARGIN = 20.0  # m of route a random start leaves before the goal (something to drive)
SPAWN_ATTEMPTS = 50  # random draws per NPC before a crowded road gets fewer NPCs
GRAVITY = 9.81  # m/s^2


def build_road(cfg: HighwayEnvConfig, network_class: type[RoadNetwork] = TrafficNetwork,
               route_file: str | None = None) -> tuple[RoadNetwork, Route]:
    """The two-lane road of ``route_file`` (default: env.route_file; "" = the built-in road) and the ego
    lane's centre line (envs/roads.py)."""
    name = cfg.route_file if route_file is None else route_file
    if name:
        return road_from_file(name, cfg.reward.lane_width, cfg.npc_lead_in, network_class, cfg.road_run_out)
    return builtin_road(cfg.straight_length, cfg.turn_radius, cfg.exit_length, cfg.reward.lane_width,
                        cfg.npc_lead_in, network_class, cfg.road_run_out)


def first_order_lag(current: float, command: float, dt: float, tau: float) -> float:
    """Where an actuator with time constant ``tau`` gets from ``current`` towards ``command`` in ``dt``:
    the exact discretisation of dx/dt = (command - x) / tau (the pedal's and the steering rack's lag)."""
    return current + (command - current) * -math.expm1(-dt / tau)


class EgoVehicle(Vehicle):
    """highway-env's kinematic bicycle (Vehicle.step), with the axles ``wheelbase`` apart instead of the
    body length, so a steering angle turns the ego as much as it turns CARLA's Model 3."""

    def __init__(self, road: Road, position, heading: float, wheelbase: float, speed: float = 0.0,
                 max_lateral_acceleration: float = math.inf):
        super().__init__(road, position, heading, speed)
        self.wheelbase = wheelbase
        self.max_lateral_acceleration = max_lateral_acceleration  # env.friction x g
        self.color = VehicleGraphics.EGO_COLOR

    def step(self, dt: float) -> None:
        self.clip_actions()
        # Semi-implicit Euler (speed first): the distance moved is the reported speed * dt, and a stop
        # (speed 0) moves nothing.
        self.speed += self.action["acceleration"] * dt
        beta = np.arctan(0.5 * np.tan(self.action["steering"]))  # slip angle, centre of mass midway
        if self.max_lateral_acceleration < math.inf and self.speed > 0:
            # Lateral acceleration speed * yaw rate = speed^2 sin(beta) / (wheelbase / 2): past the
            # tyres' limit the car understeers, turning only as tightly as friction allows.
            limit = self.max_lateral_acceleration * self.wheelbase / 2 / (self.speed * self.speed)
            if limit < 1.0 and abs(math.sin(beta)) > limit:
                beta = math.copysign(math.asin(limit), beta)
        course = self.heading + beta  # the direction the centre of mass moves
        self.position += self.speed * np.array([np.cos(course), np.sin(course)]) * dt
        if self.impact is not None:
            self.position += self.impact
            self.crashed = True
            self.impact = None
        self.heading += self.speed * np.sin(beta) / (self.wheelbase / 2) * dt
        self.on_state_update()


class HighwayDrivingEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    network_class: type[RoadNetwork] = TrafficNetwork  # envs/traffic.py: exact broad phases
    npc_class: type[IDMVehicle] = TrafficVehicle  # envs/traffic.py: IDMVehicle without numpy's scalar clips

    def __init__(self, cfg: HighwayEnvConfig, npc_vehicles: int, role: str = "train",
                 render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if npc_vehicles < 0:
            raise ValueError(f"npc_vehicles must be >= 0, got {npc_vehicles}")
        self.cfg, self.role, self.render_mode = cfg, role, render_mode
        self.n_npcs = int(round(npc_vehicles * cfg.traffic_fraction))
        self.dt = cfg.step_seconds()
        self.observation_space = observation_space(cfg)
        self.action_space = ACTION_SPACE
        self.route_names = route_names(cfg, role)
        self._roads: dict[str, tuple] = {}  # route name -> (network, route, camera), built when first driven
        self._use_route(self.route_names[0])
        self._stack = FrameStack(cfg.frame_stack, cfg.image_height, cfg.image_width)
        self._video: tuple[str, TopDownCamera] | None = None  # env.camera=none: what rgb_array renders show
        self.road: Road | None = None
        self.ego: EgoVehicle | None = None
        self._last_rgb: np.ndarray | None = None

    # --- gymnasium API --------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """``options={"route": NAME}`` drives that one of ``route_names``; otherwise a training env with
        several routes draws one (seeded), and any other drives the first."""
        super().reset(seed=seed)
        name = (options or {}).get("route")
        if name is None:
            many = self.role == "train" and len(self.route_names) > 1
            name = self.route_names[int(self.np_random.integers(len(self.route_names)))] if many else self.route_names[0]
        elif name not in self.route_names:
            raise ValueError(f"route {name!r} is not one of this env's routes ({', '.join(self.route_names)})")
        self._use_route(name)
        # IDM / MOBIL draw from the road's RandomState: seeded from this env's stream, like the traffic.
        road_seed = int(self.np_random.integers(2**31 - 1))
        self.road = self._new_road(np.random.RandomState(road_seed))
        self._bound_rng = np.random.default_rng(road_seed)  # env.marking_bound_probability's draws
        s0, v0 = self._start()
        self.ego = EgoVehicle(self.road, self.route.point_at(s0), self.route.yaw_at(s0), self.cfg.wheelbase, v0,
                              self.cfg.friction * GRAVITY)
        self.road.vehicles.append(self.ego)
        self.road.centre = self.ego
        self._spawn_npcs(s0)
        proj = self.route.project(self.ego.position)
        self._s, self._speed, self._accel, self._heading = proj.s, v0, 0.0, self.ego.heading
        self._actuator = 0.0  # the acceleration the drivetrain and brakes deliver (actuator lag)
        self._steer = 0.0  # the wheels' angle / MAX_STEER_RAD (steering lag)
        self._invading = self._crashed = self._completed = False
        self._steps = 0
        self._stack.reset()
        self._previous_action = np.zeros(2, dtype=np.float32)
        q = self._measure(proj)
        return self._observation(q, proj), {"npc_vehicles": len(self.road.vehicles) - 1, "route": self.route_name}

    def step(self, action):
        if self.ego is None:
            raise ResetNeeded("call reset() before step()")
        steer, throttle, brake = split_action(np.asarray(action, dtype=np.float32))
        self._previous_action = np.array([steer, throttle - brake], dtype=np.float32)
        accel = throttle * self.cfg.max_acceleration - brake * self.cfg.max_deceleration
        if self.cfg.actuator_time_constant > 0:
            accel = first_order_lag(self._actuator, accel, self.dt, self.cfg.actuator_time_constant)
        accel = max(accel, -max(self.ego.speed, 0.0) / self.dt)  # braking stops the ego, never reverses it
        self._actuator = accel  # a stopped car's brakes deliver no deceleration to release later
        if self.cfg.steer_time_constant > 0:
            steer = self._steer = first_order_lag(self._steer, steer, self.dt, self.cfg.steer_time_constant)
        self.ego.act({"steering": steer * MAX_STEER_RAD, "acceleration": accel})
        self.road.act()  # the NPCs decide (the ego keeps the action just set)
        self.road.step(self.dt)
        self._drop_finished_npcs()
        self._steps += 1
        proj = self.route.project(self.ego.position)
        q = self._measure(proj)
        reward, components = compute_reward(q, self.cfg.reward)
        terminated = bool(q.collision or q.off_road or q.route_completed)
        truncated = not terminated and self._steps >= self.cfg.max_episode_steps
        info = q.as_info() | {"reward_components": components, "is_success": bool(q.route_completed)}
        return self._observation(q, proj), float(reward), terminated, truncated, info

    def render(self):
        return self._last_rgb if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self.road = self.ego = None

    # --- internals ------------------------------------------------------------------------------------
    def _use_route(self, name: str) -> None:
        road = self._roads.get(name)
        if road is None:
            network, route = build_road(self.cfg, self.network_class, name)
            camera = {"topdown": TopDownCamera, "dashcam": DashCamera}.get(self.cfg.camera)
            road = self._roads[name] = (network, route, camera and camera(self.cfg, network, route))
        self.route_name = name
        self.network, self.route, self.camera = road

    def _video_camera(self) -> TopDownCamera:
        """The top-down view of the current route (env.camera=none renders videos with it)."""
        if self._video is None or self._video[0] != self.route_name:
            self._video = (self.route_name, TopDownCamera(self.cfg, self.network, self.route))
        return self._video[1]

    def _new_road(self, np_random: np.random.RandomState) -> Road:
        return TrafficRoad(self.network, np_random, self.cfg.npc_lod_radius)

    def _start(self) -> tuple[float, float]:
        """(route arc length, speed) the ego starts at: the route's start at rest, or for a training
        episode with probability env.random_start a uniform point and speed (drawn only when enabled, so
        the reference's random stream is unchanged)."""
        cfg = self.cfg
        if self.role != "train" or cfg.random_start <= 0 or self.np_random.random() >= cfg.random_start:
            return 0.0, 0.0
        s0 = float(self.np_random.uniform(0.0, max(self.route.length - RANDOM_START_MARGIN, 0.0)))
        return s0, float(self.np_random.uniform(0.0, cfg.random_start_speed))

    def _spawn_npcs(self, s0: float = 0.0) -> None:
        """NPCs at random route positions on both lanes, >= npc_min_distance from the ego's start (ahead of
        it when it starts at the route's start) and >= IDM's jam distance apart on a lane (fewer than asked
        only when the road is that crowded)."""
        cfg, route, rng = self.cfg, self.route, self.np_random
        last = route.length - IDMVehicle.LENGTH  # a whole NPC on the road
        lowest = cfg.npc_min_distance if s0 == 0.0 else 0.0
        if cfg.npc_lead_in > 0:  # the road goes on behind the start: NPCs behind the ego too
            lowest = -cfg.npc_lead_in + IDMVehicle.LENGTH
        placed: list[tuple[int, float]] = []
        for _ in range(self.n_npcs if last > cfg.npc_min_distance else 0):
            for _ in range(SPAWN_ATTEMPTS):
                lane_id = int(rng.integers(2))
                s = float(rng.uniform(lowest, last))
                if abs(s - s0) < cfg.npc_min_distance:
                    continue
                if all(l != lane_id or abs(s - t) >= IDMVehicle.DISTANCE_WANTED for l, t in placed):
                    break
            else:
                continue
            placed.append((lane_id, s))
            yaw = route.yaw_at(s)
            left = -(RIGHT_LANE - lane_id) * self.cfg.reward.lane_width  # negative lateral = left
            on_route = route.point_at(s) if s >= 0 else route.start + s * np.array([math.cos(yaw), math.sin(yaw)])
            point = on_route + left * np.array([-math.sin(yaw), math.cos(yaw)])
            index = self.network.get_closest_lane_index(point, yaw)
            lane = self.network.get_lane(index)
            longitudinal = lane.local_coordinates(point)[0]
            speed = float(rng.uniform(cfg.npc_min_speed, cfg.npc_max_speed))
            npc = self.npc_class(self.road, lane.position(longitudinal, 0.0), lane.heading_at(longitudinal),
                                 speed, target_lane_index=index, target_speed=speed)
            npc.paint = len(placed)  # the dashcam's body colour (envs/dashcam.py)
            self.road.vehicles.append(npc)

    def _drop_finished_npcs(self) -> None:
        """NPCs that drove past the end of the road (the goal, or the run-out past it) leave it."""
        end = "out" if self.cfg.road_run_out > 0 else "goal"
        self.road.vehicles = [v for v in self.road.vehicles if v is self.ego or not (
            v.lane_index[1] == end and v.lane.local_coordinates(v.position)[0] > v.lane.length)]

    def _nearest_ahead(self, s: float, lateral: float) -> tuple[float, float]:
        """(gap, TTC) to the nearest NPC ahead in the ego's lane corridor within obstacle_range: NPCs
        within reach (Euclidean, centre to centre) are projected onto the route together."""
        ego, cfg = self.ego, self.cfg
        best, ttc = math.inf, math.inf
        reach = cfg.obstacle_range + ego.LENGTH  # Euclidean pre-filter, centre to centre
        reach2 = reach * reach
        ex, ey = ego.position.tolist()
        near = []
        for v in self.road.vehicles:  # on floats: numpy's per-call cost exceeds the arithmetic here
            if v is not ego:
                x, y = v.position.tolist()
                if (x - ex) * (x - ex) + (y - ey) * (y - ey) <= reach2:
                    near.append(v)
        if not near:
            return best, ttc
        for v, p in zip(near, self.route.project_many(np.array([v.position for v in near]))):
            gap = max(p.s - s - (ego.LENGTH + v.LENGTH) / 2, 0.0)
            if p.s <= s or abs(p.lateral - lateral) >= cfg.reward.lane_width / 2 or gap > cfg.obstacle_range:
                continue
            if gap < best:
                closing = ego.speed - v.speed * math.cos(v.heading - ego.heading)
                best, ttc = gap, (gap / closing if closing > 1e-3 else math.inf)
        return best, ttc

    def _measure(self, proj) -> StepQuantities:
        cfg, ego, dt = self.cfg, self.ego, self.dt
        speed = float(ego.speed)
        heading_error = wrap_angle(ego.heading - proj.route_yaw)
        accel = (speed - self._speed) / dt
        jerk = (accel - self._accel) / dt
        yaw_rate = wrap_angle(ego.heading - self._heading) / dt
        # The ego touches a marking when its footprint passes half a lane from the centre line.
        overlap = self.route.marking_overlap(cfg.marking_geometry, ego.position, float(ego.heading), proj,
                                             ego.LENGTH / 2, ego.WIDTH / 2, cfg.reward.lane_width)
        invading = overlap > 0.0
        crashed = bool(ego.crashed)
        completed = bool(np.hypot(*(ego.position - self.route.goal)) <= cfg.goal_radius)
        obstacle, ttc = self._nearest_ahead(proj.s, proj.lateral)
        q = StepQuantities(
            speed=speed,
            lateral_deviation=proj.lateral,
            heading_error=heading_error,
            longitudinal_acceleration=accel,
            lateral_acceleration=speed * yaw_rate,  # centripetal, + when turning right
            longitudinal_jerk=jerk,
            collision=crashed and not self._crashed,  # highway-env's flag stays set: report its start
            lane_invasion=invading and not self._invading,
            off_road=off_road(proj.lateral, overlap, cfg.max_lateral_deviation, cfg.max_marking_overlap,
                              bound_draw(cfg.marking_bound_probability, self._bound_rng)),
            progress=proj.s - self._s,
            distance_to_goal=max(self.route.length - proj.s, 0.0),
            route_completed=completed and not self._completed,
            obstacle_distance=obstacle,
            time_to_collision=ttc,
            dt=dt,
            distance_travelled=abs(speed) * dt,
            speed_limit=self.route.speed_limit(proj.s, cfg.reward.route_speed_deceleration),
            marking_overlap=overlap,
        )
        self._s, self._speed, self._accel, self._heading = proj.s, speed, accel, float(ego.heading)
        self._invading, self._crashed, self._completed = invading, crashed, completed
        return q

    def _observation(self, q: StepQuantities, proj) -> dict[str, np.ndarray]:
        obs = {VECTOR: observation_vector(self.cfg, self.route, q, proj, self.ego.position,
                                          float(self.ego.heading), self._previous_action)}
        if self.camera is not None:
            gray, rgb = self.camera.frame(self.road.vehicles, self.ego, rgb=self.render_mode == "rgb_array")
            if rgb is not None:
                self._last_rgb = rgb
            obs[IMAGE] = self._stack.push(gray)
        elif self.render_mode == "rgb_array":  # no policy camera: the video shows the top-down view
            self._last_rgb = self._video_camera().frame(self.road.vehicles, self.ego, rgb=True)[1]
        return obs


class PlainHighwayDrivingEnv(HighwayDrivingEnv):
    """The same env on highway-env's own all-pairs RoadNetwork and Road (which ignore env.npc_lod_radius)
    with its own IDMVehicle: what envs/traffic.py is tested (tests/test_traffic.py) and benchmarked
    (benchmarks/bench_env.py) against."""

    network_class = RoadNetwork
    npc_class = IDMVehicle

    def _new_road(self, np_random: np.random.RandomState) -> Road:
        return Road(self.network, np_random=np_random)
