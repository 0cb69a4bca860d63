"""The ``env`` group: the driving envs (highway, carla) share one contract and one reward config;
``gym`` wraps any Gymnasium env with a Box action space."""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from av_td3.config.errors import check

MAX_SUBSTEP_DELTA, MAX_SUBSTEPS = 0.01, 10  # CARLA's default world settings for physics substepping
CAMERAS = ("topdown", "dashcam", "none")
VECTORS = ("reference", "minimal", "none")
MARKING_GEOMETRIES = ("outline", "lane_frame")


@dataclass
class RewardWeights:
    efficiency: float = 2.0
    lane_keeping: float = 2.0
    comfort: float = 1.0
    safety: float = 1.0
    progress: float = 3.0


@dataclass
class RewardConfig:
    """SPEC's five components; the weights and every constant the reward module reads."""

    weights: RewardWeights = field(default_factory=RewardWeights)
    target_speed: float = 8.33  # m/s
    # None: the target speed holds everywhere (the reference). A deceleration (m/s^2): efficiency's target
    # is also capped by the route's speed limit (its target speeds, e.g. lower on tight arcs, braked into
    # at this rate: Route.speed_limit), so driving a turn at the straight's speed no longer pays.
    route_speed_deceleration: Optional[float] = None
    # Efficiency above the target speed falls as 1 - overspeed_slope * (v / target - 1): the reference's
    # 1 (2 - v / target) pays 0.66 at 1.33x the target, so with progress paid per metre driving fast
    # still scores nearly as well per step as the target speed.
    overspeed_slope: float = 1.0
    lane_width: float = 3.5  # m; lane keeping is relative to half of it
    jerk_scale: float = 5.0  # m/s^3
    goal_bonus: float = 100.0
    progress_per_meter: float = 0.5
    # Below this |speed| (m/s) the vehicle counts as stopped: no lane keeping or comfort term, and the
    # standing-still penalty applies.
    stopped_speed: float = 0.1
    # Lane keeping = (1 - blend) * min(speed / lane_keeping_speed, 1), blend = lateral_weight * lateral
    # term + (1 - lateral_weight) * heading term, each term in [0, 1].
    lane_keeping_lateral_weight: float = 0.5
    lane_keeping_heading_scale: float = 0.785  # rad (45 deg): the heading term is full at this error
    lane_keeping_speed: float = 5.0  # m/s at which lane keeping reaches its full scale
    # Collision penalty graded by |speed| at impact: below low, below high, at or above high.
    collision_speed_low: float = 2.78  # m/s (10 km/h)
    collision_speed_high: float = 8.33  # m/s (30 km/h)
    collision_penalty_low: float = -5.0
    collision_penalty_mid: float = -25.0
    collision_penalty_high: float = -100.0
    off_road_penalty: float = -20.0
    lane_invasion_penalty: float = -10.0
    # Per step, per metre of the footprint past its lane's edge (StepQuantities.marking_overlap). 0: the
    # reference, where a crossing pays lane_invasion_penalty once however long the car then rides the marking.
    marking_overlap_penalty: float = 0.0
    # Wrong way: |heading error| beyond this angle, penalised linearly up to wrong_way_penalty at 180 deg.
    wrong_way_angle: float = 1.5708  # rad (90 deg)
    wrong_way_penalty: float = -5.0
    standstill_penalty: float = -0.1  # per step stopped farther than standstill_distance from the goal
    standstill_distance: float = 5.0  # m along the route
    # Obstacles ahead closer than proximity_distance: proximity_penalty * (1 - d / proximity_distance),
    # plus ttc_penalty * (1 - ttc / ttc_threshold) when the time to collision is below ttc_threshold.
    proximity_distance: float = 10.0  # m
    proximity_penalty: float = -1.0
    ttc_threshold: float = 3.0  # s
    ttc_penalty: float = -2.0

    def check(self, key: str) -> None:
        check(self.target_speed > 0, f"{key}.target_speed", f"must be positive, got {self.target_speed}")
        check(self.lane_width > 0, f"{key}.lane_width", f"must be positive, got {self.lane_width}")
        check(self.jerk_scale > 0, f"{key}.jerk_scale", f"must be positive, got {self.jerk_scale}")
        check(self.route_speed_deceleration is None or self.route_speed_deceleration > 0,
              f"{key}.route_speed_deceleration", f"must be positive or null, got {self.route_speed_deceleration}")
        check(self.overspeed_slope >= 0, f"{key}.overspeed_slope", f"must be >= 0, got {self.overspeed_slope}")
        for name in ("stopped_speed", "lane_keeping_heading_scale", "lane_keeping_speed", "proximity_distance",
                     "ttc_threshold"):
            check(getattr(self, name) > 0, f"{key}.{name}", f"must be positive, got {getattr(self, name)}")
        check(0 <= self.lane_keeping_lateral_weight <= 1, f"{key}.lane_keeping_lateral_weight",
              f"must be in [0, 1], got {self.lane_keeping_lateral_weight}")
        check(0 < self.collision_speed_low <= self.collision_speed_high, f"{key}.collision_speed_low",
              f"need 0 < collision_speed_low <= collision_speed_high, got {self.collision_speed_low}, "
              f"{self.collision_speed_high}")
        check(0 < self.wrong_way_angle < math.pi, f"{key}.wrong_way_angle",
              f"must be in (0, pi), got {self.wrong_way_angle}")


@dataclass
class EnvProcessConfig:
    """Where an env runs (envs/worker.py) and how its failures are survived; read for every env."""

    # Run the train env and the eval env each in a supervised child process. A worker that dies, hangs
    # past step_timeout or loses its simulator is replaced (the episode in flight is lost and counted,
    # `reconnects`), so a crashing simulator costs an episode, not the run. CARLA's default: its client
    # aborts the whole process when a server dies (envs/worker.py). The embedded simulator and Gymnasium
    # tasks cannot crash that way and skip the inter-process cost by default.
    worker: bool = False
    step_timeout: float = 60.0  # s a worker may take for one step / reset before it is replaced
    start_timeout: float = 180.0  # s a worker may take to build its env (CARLA: connect, load the map)
    # Failures in a row (worker replacements, or CARLA's in-process reconnects) before the run stops with
    # a checkpoint and a clear error.
    max_reconnects: int = 5
    # s before the first retry after a failure; doubled per consecutive retry (max 60 s).
    reconnect_delay: float = 2.0

    def check_process(self) -> None:
        check(self.step_timeout > 0, "env.step_timeout", f"must be positive, got {self.step_timeout}")
        check(self.start_timeout > 0, "env.start_timeout", f"must be positive, got {self.start_timeout}")
        check(self.max_reconnects >= 0, "env.max_reconnects", "must be >= 0")
        check(self.reconnect_delay >= 0, "env.reconnect_delay", "must be >= 0")


@dataclass
class DrivingEnvConfig(EnvProcessConfig):
    """What every driving env (embedded or CARLA) reads: the observation, episode and reward contract."""

    image_height: int = 84
    image_width: int = 84
    frame_stack: int = 4
    # Agent steps between the stacked frames: 1 = consecutive (the reference); k spreads the stack over
    # (frame_stack - 1) * k agent steps, so motion (a car ahead closing in) moves more pixels between them.
    frame_stride: int = 1
    max_episode_steps: int = 1000  # truncation (50 s at 20 Hz)
    max_lateral_deviation: float = 2.5  # m; beyond it the episode terminates (off road)
    # m the footprint may reach past its lane's edge (StepQuantities.marking_overlap) before the episode
    # terminates as off road: 0 ends it on the first lane invasion, so cutting a turn's inside corner costs
    # the rest of the episode as drifting off the road does. None: no such bound (the reference).
    max_marking_overlap: Optional[float] = None
    # Whether evaluation episodes (periodic, final, `av-td3 evaluate`) end at that bound too. false makes
    # the bound a training device only: evaluation drives to the task's own ends, so its success and lane
    # invasions compare with a run trained without one.
    marking_bound_in_eval: bool = True
    # The chance that an env frame with the footprint past that bound ends the episode (drawn per frame,
    # seeded per episode). 1: the first such frame ends it. Below 1 the policy also learns to drive on from
    # a touch, which a policy trained to a certain end never sees, while every frame it stays over the
    # marking risks the end: at 0.1, two touches in three end within ten frames (0.5 s).
    marking_bound_probability: float = 1.0
    # Where the ego's footprint lies against its lane's markings (StepQuantities.marking_overlap, and the
    # embedded simulator's lane invasions): "outline" projects the footprint's outline on the route, exact
    # on curves as CARLA's lane invasion sensor sees the car; "lane_frame" sets the box at the centre's
    # offset and heading error in a straight lane, which on an arc puts the corners of a car turned into
    # the turn up to half_length^2 / (2 radius) nearer the inside marking than they are (contract.py).
    marking_geometry: str = "outline"
    goal_radius: float = 3.0  # m; within it of the goal the route is complete
    # The nearest vehicle ahead within this range gives the obstacle distance and TTC (CARLA's obstacle
    # sensor; the embedded simulator measures the same in the ego's lane corridor).
    obstacle_range: float = 20.0  # m
    npc_min_distance: float = 20.0  # m along the route between the ego's start and any NPC
    # Append the nearest obstacle ahead (gap / obstacle_range, closing speed / 30) to the observation
    # vector (55 floats). The reference's 53 floats say nothing about other vehicles, so only the
    # camera shows them (contract.py).
    observe_obstacle: bool = False
    # Append the measured longitudinal acceleration / 8 m/s^2 (an IMU's reading). With an actuator lag
    # the acceleration is state that speed alone does not show, so without it the task is not Markov.
    observe_acceleration: bool = False
    # The image the policy sees: dashcam (a pinhole camera with the mount and intrinsics below: CARLA's
    # RGB camera, or the embedded simulator's projection of its world, envs/dashcam.py), topdown (the
    # embedded simulator's heading-up map, envs/camera.py) or none (no image: the agents build no CNN).
    camera: str = "dashcam"
    # The observation vector: reference (SPEC's 53 floats plus the observe_* features), minimal (speed,
    # acceleration, the previous action and a route command for the next turn, what a CARLA leaderboard
    # agent receives: no waypoints, no lateral or heading error, no gap) or none (no vector).
    vector: str = "reference"
    # m: the minimal vector's route command announces a turn (left / right) that starts within this
    # distance ahead (envs/route.py, Route.command).
    command_distance: float = 30.0
    # The route CSV (x, y, target_speed; `#` comments; envs/route_file.py), anywhere on disk. "" = the
    # env's own: the packaged Town01 reference route for CARLA, the built-in road for the embedded one.
    route_file: str = ""
    # The dashcam: resolution, horizontal field of view and mount (forward of the vehicle's centre, up,
    # pitched up by camera_pitch degrees), as CARLA's sensor.camera.rgb takes them. The policy sees it
    # through contract.to_gray_uint8 (grayscale, area resize to image_height x image_width) in both envs.
    camera_width: int = 256
    camera_height: int = 144
    camera_fov: float = 90.0  # degrees
    camera_x: float = 1.6  # m forward of the vehicle origin
    camera_z: float = 1.5  # m up
    camera_pitch: float = 0.0  # degrees, + looks up
    reward: RewardConfig = field(default_factory=RewardConfig)

    def check(self, key: str = "env") -> None:
        self.check_process()
        check(self.camera in CAMERAS, f"{key}.camera", f"must be one of {', '.join(CAMERAS)}, got {self.camera!r}")
        check(self.vector in VECTORS, f"{key}.vector", f"must be one of {', '.join(VECTORS)}, got {self.vector!r}")
        check(self.camera != "none" or self.vector != "none", f"{key}.vector",
              "env.camera=none and env.vector=none leave the policy nothing to observe")
        for name in ("observe_obstacle", "observe_acceleration"):
            check(self.vector == "reference" or not getattr(self, name), f"{key}.{name}",
                  f"extends env.vector=reference only (env.vector={self.vector} has no such feature); set it false")
        check(self.command_distance > 0, f"{key}.command_distance", f"must be positive, got {self.command_distance}")
        for name in ("camera_width", "camera_height"):
            check(getattr(self, name) >= 1, f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(0 < self.camera_fov < 180, f"{key}.camera_fov", f"must be in (0, 180), got {self.camera_fov}")
        check(self.camera_z > 0, f"{key}.camera_z", f"must be positive (above the road), got {self.camera_z}")
        check(-90 < self.camera_pitch < 90, f"{key}.camera_pitch", f"must be in (-90, 90), got {self.camera_pitch}")
        for name in ("image_height", "image_width", "frame_stack", "frame_stride", "max_episode_steps"):
            value = getattr(self, name)
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        check(self.max_lateral_deviation > 0, f"{key}.max_lateral_deviation", "must be positive")
        check(self.max_marking_overlap is None or self.max_marking_overlap >= 0, f"{key}.max_marking_overlap",
              f"must be >= 0 or null, got {self.max_marking_overlap}")
        check(0 < self.marking_bound_probability <= 1, f"{key}.marking_bound_probability",
              f"must be in (0, 1], got {self.marking_bound_probability}")
        check(self.marking_geometry in MARKING_GEOMETRIES, f"{key}.marking_geometry",
              f"must be one of {', '.join(MARKING_GEOMETRIES)}, got {self.marking_geometry!r}")
        check(self.goal_radius > 0, f"{key}.goal_radius", "must be positive")
        for name in ("obstacle_range", "npc_min_distance"):
            check(getattr(self, name) > 0, f"{key}.{name}", f"must be positive, got {getattr(self, name)}")
        self.reward.check(f"{key}.reward")


@dataclass
class HighwayEnvConfig(DrivingEnvConfig):
    """The embedded simulator on highway-env: SPEC's route shape on a two-lane road, IDM traffic."""

    _target_: str = "av_td3.envs.highway.HighwayDrivingEnv"
    camera: str = "topdown"
    # The roads: "" = one road, from env.route_file or the built-in one below (straight_length, turn_radius,
    # exit_length); or a split of route_splits: training episodes each draw one of its routes, and
    # evaluation runs over eval_routes (one route after another across the phase's episodes).
    routes: str = ""
    eval_routes: str = ""  # a split of route_splits; "" = the same roads as training
    # Named lists of route CSVs: file names in the packaged route set (av_td3/envs/routes/) or paths.
    route_splits: Dict[str, List[str]] = field(default_factory=lambda: {
        "train": ["right_90_r20.csv", "left_90_r9.csv", "s_bend_r30.csv", "right_curve_r60.csv",
                  "left_hairpin_r15.csv", "chicane_r25.csv", "right_left_r12.csv", "long_straight.csv"],
        "test": ["left_90_r20.csv", "right_90_r8.csv", "s_bend_r45.csv", "left_curve_r80_right_r10.csv"],
    })
    # m of road before the route's start: NPCs may spawn there, behind the ego (0 = the reference: the
    # road starts where the route does, and every NPC is ahead).
    npc_lead_in: float = 0.0
    # m of road past the goal (0 = the reference: the road ends at the goal, and a dashcam sees it end
    # ahead of the last stretch of every route).
    road_run_out: float = 0.0
    # Tyre friction coefficient: the ego's lateral acceleration is capped at friction x 9.81 m/s^2 (it
    # understeers past it). inf = no cap (the reference's kinematic bicycle).
    friction: float = math.inf
    simulation_frequency: int = 20  # Hz; one policy step per simulation step (CARLA's 0.05 s)
    straight_length: float = 200.0  # m, the long straight before the turn
    turn_radius: float = 20.0  # m, the 90-degree turn
    exit_length: float = 32.0  # m after the turn to the goal (SPEC's ~264 m in total)
    # Town01 spreads a scenario's NPCs over kilometres of road; the embedded route is a few hundred
    # metres, so only this fraction of scenario.npc_vehicles is placed on it.
    traffic_fraction: float = 0.25
    # Each NPC's initial and IDM target speed is drawn uniformly from [npc_min_speed, npc_max_speed].
    npc_min_speed: float = 5.0  # m/s
    npc_max_speed: float = 8.0  # m/s
    # The ego: highway-env's kinematic bicycle (5 x 2 m body) with the axles wheelbase apart.
    wheelbase: float = 2.875  # m (Tesla Model 3)
    max_acceleration: float = 3.0  # m/s^2 at full throttle
    max_deceleration: float = 8.0  # m/s^2 at full brake (braking stops the ego; it never reverses)
    # First-order lag (s) from the pedal command to the ego's acceleration, as a drivetrain and brakes
    # have (CARLA's vehicle physics smooth it too). 0 = the acceleration follows the pedal within the
    # step (the reference embedded simulator), so white action noise at 20 Hz is all jerk.
    actuator_time_constant: float = 0.0
    # First-order lag (s) from the steering command to the front wheels' angle, as a steering rack has;
    # commands that flip from lock to lock each step then average out instead of throwing the car from
    # side to side. 0 = the wheels take the commanded angle within the step (the reference).
    steer_time_constant: float = 0.0
    # Training episodes that start at a uniformly random point of the route (0 .. route length -
    # RANDOM_START_MARGIN), at a speed drawn uniformly from [0, random_start_speed] m/s, instead of at rest
    # at its start: the turn then shows up in every other episode, not only in those that survive 200 m
    # of straight. Evaluation always starts at rest at the start. 0 = the reference (every episode does).
    random_start: float = 0.0  # probability per training episode
    random_start_speed: float = 0.0  # m/s
    # Level of detail for NPCs (envs/traffic.py), as CARLA's hybrid physics: NPCs farther than this many
    # metres from the ego follow their lane kinematically with IDM's longitudinal law (no lane changes,
    # steering or collision tests); within it they are full IDM/MOBIL vehicles. It covers the camera's
    # view (~35 m to its corners), obstacle_range and the NPCs that can reach the ego within a few
    # seconds. inf = every NPC fully simulated (bit-identical to highway-env's Road).
    npc_lod_radius: float = 60.0  # m
    # The image: a top-down view turned with the ego (heading up), (view_ahead + view_behind) / image_height
    # metres per pixel, rendered render_scale x render_scale samples per pixel and area-averaged.
    view_ahead: float = 30.0  # m
    view_behind: float = 6.0  # m
    render_scale: int = 2
    # The dashcam's NPC body colours, RGB 0-255, one per NPC in turn; null = envs/dashcam.py's
    # BODY_COLOURS, whose red car shows the road's gray from behind. E.g. [[30,34,48],[232,232,232]]:
    # every car's faces clear of the road's gray. Only the dashcam draws with them.
    npc_colours: Optional[List[List[int]]] = None

    def step_seconds(self) -> float:
        return 1.0 / self.simulation_frequency

    def __post_init__(self) -> None:
        self.check()
        check(self.simulation_frequency >= 1, "env.simulation_frequency", "must be >= 1")
        for name in ("straight_length", "turn_radius", "exit_length"):
            check(getattr(self, name) > 0, f"env.{name}", f"must be positive, got {getattr(self, name)}")
        check(0 <= self.traffic_fraction <= 1, "env.traffic_fraction",
              f"must be in [0, 1], got {self.traffic_fraction}")
        check(0 <= self.random_start <= 1, "env.random_start", f"must be in [0, 1], got {self.random_start}")
        check(self.random_start_speed >= 0, "env.random_start_speed",
              f"must be >= 0, got {self.random_start_speed}")
        check(self.npc_lod_radius > 0, "env.npc_lod_radius", f"must be > 0 (inf: no level of detail), got {self.npc_lod_radius}")
        check(self.steer_time_constant >= 0, "env.steer_time_constant",
              f"must be >= 0, got {self.steer_time_constant}")
        check(self.actuator_time_constant >= 0, "env.actuator_time_constant",
              f"must be >= 0, got {self.actuator_time_constant}")
        for name in ("wheelbase", "max_acceleration", "max_deceleration", "view_ahead"):
            check(getattr(self, name) > 0, f"env.{name}", f"must be positive, got {getattr(self, name)}")
        check(0 <= self.npc_min_speed <= self.npc_max_speed, "env.npc_min_speed",
              f"need 0 <= npc_min_speed <= npc_max_speed, got {self.npc_min_speed}, {self.npc_max_speed}")
        check(self.view_behind >= 0, "env.view_behind", f"must be >= 0, got {self.view_behind}")
        check(self.render_scale >= 1, "env.render_scale", f"must be >= 1, got {self.render_scale}")
        check(self.npc_lead_in >= 0, "env.npc_lead_in", f"must be >= 0, got {self.npc_lead_in}")
        check(self.road_run_out >= 0, "env.road_run_out", f"must be >= 0, got {self.road_run_out}")
        check(self.friction > 0, "env.friction", f"must be positive (inf: no cap), got {self.friction}")
        if self.npc_colours is not None:
            check(self.camera == "dashcam", "env.npc_colours",
                  f"colours the dashcam's NPCs only (env.camera={self.camera}); leave it null")
            check(len(self.npc_colours) >= 1 and all(len(c) == 3 and all(0 <= v <= 255 for v in c)
                                                     for c in self.npc_colours),
                  "env.npc_colours", f"must be a non-empty list of [R, G, B] in 0-255, got {self.npc_colours}")
        for name in ("routes", "eval_routes"):
            split = getattr(self, name)
            check(not split or split in self.route_splits, f"env.{name}",
                  f"names no split of env.route_splits ({', '.join(self.route_splits)}), got {split!r}")
        check(not (self.routes and self.route_file), "env.route_file",
              f"env.routes={self.routes} already names the roads; set one of env.routes and env.route_file")
        for split, files in self.route_splits.items():
            check(len(files) >= 1, f"env.route_splits.{split}", "must list at least one route file")


@dataclass
class CarlaEnvConfig(DrivingEnvConfig):
    """CARLA 0.9.16, Town01, synchronous at 20 Hz. CARLA_HOST / CARLA_PORT override host / port."""

    _target_: str = "av_td3.envs.carla.env.CarlaDrivingEnv"
    host: str = "127.0.0.1"
    port: int = 2000
    timeout: float = 5.0  # s, client timeout (connection and world.tick)
    traffic_manager_port: int = 8000
    # Ports for parallel jobs on one machine: base + job number * stride (and the eval env: + 1).
    port_stride: int = 10
    map: str = "Town01"
    fixed_delta_seconds: float = 0.05
    worker: bool = True  # EnvProcessConfig: the client's aborts kill only the worker
    ego_blueprint: str = "vehicle.tesla.model3"

    def step_seconds(self) -> float:
        return self.fixed_delta_seconds

    def __post_init__(self) -> None:
        self.check()
        check(self.camera != "topdown", "env.camera", "env=carla has camera dashcam or none (topdown is the "
              "embedded simulator's)")
        for name in ("port", "traffic_manager_port"):
            check(getattr(self, name) >= 1, f"env.{name}", f"must be >= 1, got {getattr(self, name)}")
        # A server uses port, port+1 and port+2, so servers of parallel jobs must be >= 3 apart;
        # 0 puts every job on the one server (sequential sweeps with the basic launcher).
        check(self.port_stride == 0 or self.port_stride >= 3, "env.port_stride",
              f"must be 0 (every job on one server) or >= 3, got {self.port_stride}")
        check(self.timeout > 0, "env.timeout", f"must be positive, got {self.timeout}")
        check(self.fixed_delta_seconds > 0, "env.fixed_delta_seconds", "must be positive")
        # CARLA splits a tick into physics substeps of at most max_substep_delta_time (0.01 s), at most
        # max_substeps (10) of them: a longer tick cannot be simulated as asked.
        check(self.fixed_delta_seconds <= MAX_SUBSTEP_DELTA * MAX_SUBSTEPS, "env.fixed_delta_seconds",
              f"must be <= {MAX_SUBSTEP_DELTA * MAX_SUBSTEPS:g} s (CARLA's max_substep_delta_time "
              f"{MAX_SUBSTEP_DELTA:g} s x max_substeps {MAX_SUBSTEPS}), got {self.fixed_delta_seconds}")


@dataclass
class GymEnvConfig(EnvProcessConfig):
    """Any Gymnasium env with a Box action space (vector observations use an MLP agent)."""

    _target_: str = "av_td3.envs.gym.make_gym_env"
    id: str = "Pendulum-v1"
    max_episode_steps: int = 200  # truncation; replaces the env's registered time limit
    frame_stack: int = 4  # grayscale frames per observation for pixel (uint8 image) observations
    frame_stride: int = 1  # agent steps between the stacked frames (1: consecutive)

    def __post_init__(self) -> None:
        self.check_process()
        check(self.max_episode_steps >= 1, "env.max_episode_steps", "must be >= 1")
        for name in ("frame_stack", "frame_stride"):
            check(getattr(self, name) >= 1, f"env.{name}", f"must be >= 1, got {getattr(self, name)}")
