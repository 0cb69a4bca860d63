"""The ``env`` group: the driving envs (highway, carla) share one contract and one reward config;
``gym`` wraps any Gymnasium env with a Box action space."""

from dataclasses import dataclass, field

from av_td3.config.errors import check


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
    lane_width: float = 3.5  # m; lane keeping is relative to half of it
    jerk_scale: float = 5.0  # m/s^3
    goal_bonus: float = 100.0
    progress_per_meter: float = 0.5

    def check(self, key: str) -> None:
        check(self.target_speed > 0, f"{key}.target_speed", f"must be positive, got {self.target_speed}")
        check(self.lane_width > 0, f"{key}.lane_width", f"must be positive, got {self.lane_width}")
        check(self.jerk_scale > 0, f"{key}.jerk_scale", f"must be positive, got {self.jerk_scale}")


@dataclass
class DrivingEnvConfig:
    """What every driving env (embedded or CARLA) reads: the observation, episode and reward contract."""

    image_height: int = 84
    image_width: int = 84
    frame_stack: int = 4
    max_episode_steps: int = 1000  # truncation (50 s at 20 Hz)
    max_lateral_deviation: float = 2.5  # m; beyond it the episode terminates (off road)
    goal_radius: float = 3.0  # m; within it of the goal the route is complete
    reward: RewardConfig = field(default_factory=RewardConfig)

    def check(self, key: str = "env") -> None:
        for name in ("image_height", "image_width", "frame_stack", "max_episode_steps"):
            value = getattr(self, name)
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        check(self.max_lateral_deviation > 0, f"{key}.max_lateral_deviation", "must be positive")
        check(self.goal_radius > 0, f"{key}.goal_radius", "must be positive")
        self.reward.check(f"{key}.reward")


@dataclass
class HighwayEnvConfig(DrivingEnvConfig):
    """The embedded simulator on highway-env: SPEC's route shape on a two-lane road, IDM traffic."""

    _target_: str = "av_td3.envs.highway.HighwayDrivingEnv"
    simulation_frequency: int = 20  # Hz; one policy step per simulation step (CARLA's 0.05 s)
    straight_length: float = 200.0  # m, the long straight before the turn
    turn_radius: float = 20.0  # m, the 90-degree turn
    exit_length: float = 32.0  # m after the turn to the goal (SPEC's ~264 m in total)
    # Town01 spreads a scenario's NPCs over kilometres of road; the embedded route is a few hundred
    # metres, so only this fraction of scenario.npc_vehicles is placed on it.
    traffic_fraction: float = 0.25

    def __post_init__(self) -> None:
        self.check()
        check(self.simulation_frequency >= 1, "env.simulation_frequency", "must be >= 1")
        for name in ("straight_length", "turn_radius", "exit_length"):
            check(getattr(self, name) > 0, f"env.{name}", f"must be positive, got {getattr(self, name)}")
        check(0 <= self.traffic_fraction <= 1, "env.traffic_fraction",
              f"must be in [0, 1], got {self.traffic_fraction}")


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
    max_reconnects: int = 5

    def __post_init__(self) -> None:
        self.check()
        for name in ("port", "traffic_manager_port", "port_stride"):
            check(getattr(self, name) >= 1, f"env.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(self.timeout > 0, "env.timeout", f"must be positive, got {self.timeout}")
        check(self.fixed_delta_seconds > 0, "env.fixed_delta_seconds", "must be positive")
        check(self.max_reconnects >= 0, "env.max_reconnects", "must be >= 0")


@dataclass
class GymEnvConfig:
    """Any Gymnasium env with a Box action space (vector observations use an MLP agent)."""

    _target_: str = "av_td3.envs.gym.make_gym_env"
    id: str = "Pendulum-v1"
    max_episode_steps: int = 200

    def __post_init__(self) -> None:
        check(self.max_episode_steps >= 1, "env.max_episode_steps", "must be >= 1")
