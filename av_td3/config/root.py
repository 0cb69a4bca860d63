"""The top-level run config and its registration with Hydra's ConfigStore."""

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from av_td3.config.agent import ClassicalConfig, TD3Config
from av_td3.config.clipping import ClippingConfig
from av_td3.config.env import CarlaEnvConfig, GymEnvConfig, HighwayEnvConfig
from av_td3.config.errors import check
from av_td3.config.exploration import ExplorationConfig

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class ScenarioConfig:
    """Traffic density; every driving env reads it. SPEC's scenarios 0/1/2 = light/medium/heavy."""

    npc_vehicles: int = 20

    def __post_init__(self) -> None:
        check(self.npc_vehicles >= 0, "scenario.npc_vehicles", f"must be >= 0, got {self.npc_vehicles}")


@dataclass
class TrainerConfig:
    total_steps: int = 1_000_000
    learning_starts: int = 10_000  # uniform random actions before this many env steps
    # Gradient updates per agent step of each env (per action_repeat env frames): with num_envs envs a
    # step of all of them makes num_envs * updates_per_step updates, so the update-to-data ratio,
    # updates_per_step / action_repeat per frame, does not depend on num_envs.
    updates_per_step: int = 1
    # Train envs stepped together, each with its own episodes, seeds and exploration noise, in its own
    # worker process with env.worker=true (in parallel) or one after another in this one. The replay
    # keeps each env's frames in its own segment. Checkpoints wait until every env's episode has ended
    # (those that end first pause), so a resume is exact. 1 = one env, exactly as before.
    num_envs: int = 1
    # Run each step's updates while the train envs step in their worker processes (env.worker=true):
    # the env uses a second core instead of waiting for the learner. Every update and every action are
    # those of the sequential order, except that a step's updates sample the replay before that step's
    # transition is stored (one transition of the ~10^5 left out of one step's batches). false: act,
    # step, store, update, one after another (the reference).
    update_while_stepping: bool = False
    # Each agent action is held for this many env frames (rewards summed). Every step count here
    # (total_steps, learning_starts, eval_every, checkpoint_every) and every logged step is in env frames.
    action_repeat: int = 1
    # The reward the agent learns from: clip(reward_scale * r, -reward_clip, reward_clip) per agent
    # step (null: no clipping). Logged returns and evaluation are always the env's own reward.
    reward_scale: float = 1.0
    reward_clip: Optional[float] = None
    replay_capacity: int = 100_000
    eval_every: int = 10_000  # env steps; 0 = only the final evaluation
    eval_episodes: int = 5
    # Episodes of the final evaluation (the run's result); null = eval_episodes. More episodes there
    # narrow the result's interval without slowing the evaluations during training.
    final_eval_episodes: Optional[int] = None
    # Splits of env.route_splits (embedded simulator) that the final evaluation also drives, each with
    # final_eval_episodes over its routes: [train] beside evaluation on env.eval_routes = test gives the
    # generalisation gap in one run (results.json final_eval_by_split; TensorBoard final/<split>/...).
    final_eval_splits: List[str] = field(default_factory=list)
    checkpoint_every: int = 10_000  # env steps; also on SIGTERM/SIGINT and at the end
    log_every_updates: int = 10  # gradient/loss tags: one host sync per this many updates
    max_consecutive_nonfinite: int = 10  # skipped updates in a row before the run stops
    progress_bar: bool = True
    # After a stop signal, seconds to go on until the episode in progress ends and checkpoint there (an
    # exact resume); past them, stop without a new checkpoint (resume from the last, also exact). Keep it
    # below a cluster's signal delay (the slurm preset's signal_delay_s is 120).
    stop_grace_s: float = 30.0
    # Record the first episode of every evaluation phase: RUN/videos/eval_<step>.gif and TensorBoard's
    # eval/video (the policy's camera view, beside the embedded simulator's RGB render). av_td3/video.py.
    eval_video: bool = False

    def __post_init__(self) -> None:
        k = "trainer"
        check(self.stop_grace_s >= 0, f"{k}.stop_grace_s", f"must be >= 0, got {self.stop_grace_s}")
        check(self.final_eval_episodes is None or self.final_eval_episodes >= 1, f"{k}.final_eval_episodes",
              f"must be >= 1, got {self.final_eval_episodes}")
        check(self.reward_scale > 0, f"{k}.reward_scale", f"must be positive, got {self.reward_scale}")
        check(self.reward_clip is None or self.reward_clip > 0, f"{k}.reward_clip",
              f"must be positive, got {self.reward_clip}")
        for name in ("total_steps", "updates_per_step", "num_envs", "action_repeat", "replay_capacity", "eval_episodes",
                     "log_every_updates", "max_consecutive_nonfinite"):
            check(getattr(self, name) >= 1, f"{k}.{name}", f"must be >= 1, got {getattr(self, name)}")
        for name in ("learning_starts", "eval_every", "checkpoint_every"):
            check(getattr(self, name) >= 0, f"{k}.{name}", f"must be >= 0, got {getattr(self, name)}")
        check(self.learning_starts < self.total_steps, f"{k}.learning_starts",
              f"({self.learning_starts}) must be smaller than trainer.total_steps ({self.total_steps}), "
              "or no update would ever run")


@dataclass
class Config:
    agent: Any = MISSING  # TD3Config or ClassicalConfig, chosen by the agent group
    clipping: ClippingConfig = field(default_factory=ClippingConfig)
    env: Any = MISSING  # HighwayEnvConfig, CarlaEnvConfig or GymEnvConfig
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    seed: int = 0
    device: str = "auto"  # auto = cuda when available
    # torch intra-op threads per run; 0 = the cores this process may use divided by parallel jobs.
    torch_threads: int = 0

    def __post_init__(self) -> None:
        check(self.device in DEVICES, "device", f"must be one of {DEVICES}, got {self.device!r}")
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        check(self.torch_threads >= 0, "torch_threads", f"must be >= 0, got {self.torch_threads}")
        check(not self.trainer.update_while_stepping or getattr(self.env, "worker", False),
              "trainer.update_while_stepping", "needs env.worker=true: the train env steps in its worker "
              "process while the agent updates")
        check(not (isinstance(self.agent, ClassicalConfig) and isinstance(self.env, GymEnvConfig)),
              "agent", "the classical controller steers on route waypoints: it needs a driving env "
              "(env=highway or env=carla), not env=gym")
        if isinstance(self.agent, ClassicalConfig):
            self._check_classical()
        check(self.trainer.num_envs == 1 or not isinstance(self.env, CarlaEnvConfig), "trainer.num_envs",
              "env=carla runs one train env per server for now (each needs its own ports); use one job per "
              "server for parallel collection")
        for split in self.trainer.final_eval_splits:
            check(split in getattr(self.env, "route_splits", {}), "trainer.final_eval_splits",
                  f"{split!r} is not a split of env.route_splits (the embedded simulator's route sets)")
        if isinstance(self.agent, TD3Config):
            check(not self.agent.aux_weight or getattr(self.env, "camera", "none") != "none", "agent.aux_weight",
                  "trains the image encoder on the driving env's privileged targets: it needs a driving env "
                  "with a camera (env=highway or env=carla, env.camera not none)")
            check(self.agent.batch_size <= self.trainer.replay_capacity, "agent.batch_size",
                  f"({self.agent.batch_size}) exceeds trainer.replay_capacity "
                  f"({self.trainer.replay_capacity})")

    def _check_classical(self) -> None:
        check(getattr(self.env, "vector", "reference") == "reference", "env.vector",
              "the classical controller steers on the reference vector's route waypoints: it needs "
              "env.vector=reference")
        check(not self.agent.car_following or getattr(self.env, "observe_obstacle", False), "agent.car_following",
              "follows the gap to the vehicle ahead in the observation vector: set env.observe_obstacle=true")
        if self.agent.dt is not None and hasattr(self.env, "step_seconds"):
            step = self.env.step_seconds() * self.trainer.action_repeat
            check(abs(self.agent.dt - step) < 1e-9, "agent.dt",
                  f"({self.agent.dt:g} s) is not the time between the controller's actions, the env's step "
                  f"x trainer.action_repeat = {step:g} s; leave it null to derive it")


SCHEMAS = {
    ("agent", "td3"): TD3Config,
    ("agent", "classical"): ClassicalConfig,
    ("env", "highway"): HighwayEnvConfig,
    ("env", "carla"): CarlaEnvConfig,
    ("env", "gym"): GymEnvConfig,
}


def register_configs() -> None:
    """Schemas live in ``schema/<group>/<name>``, outside the selectable groups, so that
    ``agent=glob(*)`` sweeps only real options. A group option's YAML opens with
    ``defaults: [/schema/<group>/<name>@_here_, _self_]``."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for (group, name), node in SCHEMAS.items():
        cs.store(group=f"schema/{group}", name=name, node=node)
