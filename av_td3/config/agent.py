"""The ``agent`` group. Shapes (image, vector, action) are not config: the agent gets them from the
env's spaces at build time (``hydra.utils.instantiate(cfg.agent, ...)``)."""

from dataclasses import dataclass, field
from typing import Optional

from av_td3.config.errors import check

ENCODERS = ("separate", "shared")
PRECISIONS = ("float32", "bfloat16")
AUGMENTATIONS = ("none", "shift", "shift_vertical")
SMOOTHNESS_PAIRS = ("bootstrap", "consecutive")


@dataclass
class TD3Config:
    """TD3 (Fujimoto et al. 2018) with SPEC's visual networks. DDPG is this with the three TD3 switches
    off: ``n_critics=1``, ``policy_noise=0``, ``policy_delay=1``."""

    _target_: str = "av_td3.agents.td3.TD3Agent"
    # NatureCNN encoder: one conv layer per entry, then a linear layer to ``feature_dim``.
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    cnn_kernels: list[int] = field(default_factory=lambda: [8, 4, 3])
    cnn_strides: list[int] = field(default_factory=lambda: [4, 2, 1])
    feature_dim: int = 512
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    # LayerNorm after every hidden linear layer of the actor and critic MLPs (before the ReLU), as in
    # DrQ-v2's trunk and in RLPD / TD7: keeps Q extrapolation bounded. The reference has none.
    layer_norm: bool = False
    # separate: actor and critic own their CNNs (the reference). shared: the critic's CNN feeds the actor
    # detached features (DrQ-v2); the actor then trains only its MLP.
    encoder: str = "separate"
    n_critics: int = 2
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    weight_decay: float = 0.0
    gamma: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    batch_size: int = 256
    # n-step returns: r_t + g r_t+1 + ... + g^(m-1) r_t+m-1 + g^m Q(s_t+m), m <= n_step, cut at the
    # episode's end (no bootstrap past a termination; a truncation bootstraps from its last observation).
    n_step: int = 1
    # Adds saturation_penalty * mean(x^2) of the actor's pre-tanh output x to the actor loss. Without it
    # a flat early critic lets Adam drive x far into the tanh's flat tails (|x| ~ 15 measured), where
    # the actor's gradient vanishes and its actions stay pinned at +-1 (the reference: 0).
    saturation_penalty: float = 0.0
    # Adds smoothness_penalty * mean((pi(s) - pi(s'))^2) to the actor loss: CAPS's temporal term (Mysore
    # et al. 2021), against bang-bang actions that flip from one limit to the other on every step; s'
    # enters without a gradient into the CNN. 0 = off.
    smoothness_penalty: float = 0.0
    # Which s' the smoothness term compares with s. bootstrap: the update's next observation, n_step agent
    # steps ahead, its image shifted independently of s's (DrQ), so with augmentation the term also
    # trains the actor to act alike on images shifted by up to 2 shift_pad pixels against each other;
    # its features are the ones the critic target computed (shared encoder) or the actor's own.
    # consecutive: s_t+1, one agent step ahead, shifted by s's own offset (CAPS's pair): the term then
    # asks only for smooth actions, not for blindness to where the lane lies in the image.
    smoothness_pair: str = "bootstrap"
    # Adds aux_weight * the mean squared error of a linear head on the critic's CNN features (the features
    # the actor reads with the shared encoder) predicting the observation's privileged targets: the lateral
    # and heading error and the gap and closing speed to the car ahead (envs/contract.py,
    # privileged_targets), known to the simulator in training and never given to the policy. Supervises
    # the encoder toward what lane keeping and car following need. 0 = off. Needs a camera.
    aux_weight: float = 0.0
    # DrQ's image augmentation on every sampled batch: shift = pad by shift_pad pixels (edge
    # replicated) and crop back at a random offset, per sample, for obs and next_obs independently.
    # shift_vertical: the same up and down only. On a dashcam a sideways shift looks like a change of
    # the car's heading and lane position, the cues lane keeping steers by; a vertical one like pitch.
    augmentation: str = "none"
    shift_pad: int = 4
    # Weight averaging (Nikishin et al. 2018, "Improving stability in deep RL with weight averaging"):
    # evaluations drive a moving average of the policy's weights (the actor, and with the shared encoder
    # the critic's CNN) instead of the last update's. Its rate per actor update: the plain mean of all
    # actors so far until 1/k falls below it, then an exponential moving average over ~1/rate actor
    # updates (2e-4: 5,000, i.e. 20k env frames at action repeat 2, policy delay 2, one update per agent
    # step). Training never reads it: exploration acts with the trained weights, and a run learns the
    # same with or without it (`av-td3 evaluate RUN --weights trained` drives the other). 0 = off.
    policy_average: float = 0.0
    # float32 (the reference), or bfloat16: the CNN encoders run under autocast, ~1.5x faster updates
    # on CPUs with native bf16 (AVX512-BF16, AMX); heads, losses, gradients and their
    # norms stay float32. It changes results at bf16's precision (~3 significant digits).
    precision: str = "float32"
    # torch.compile the CNN encoders (inductor; needs a C++ compiler on CPU): faster updates after a
    # one-off compile of about a minute, results equal within float rounding. For long runs.
    compile: bool = False

    def __post_init__(self) -> None:
        k = "agent"
        n = len(self.cnn_channels)
        check(n > 0 and len(self.cnn_kernels) == n and len(self.cnn_strides) == n, f"{k}.cnn_channels",
              "cnn_channels, cnn_kernels and cnn_strides must be non-empty and of equal length")
        for name in ("cnn_channels", "cnn_kernels", "cnn_strides", "hidden_dims"):
            check(all(v > 0 for v in getattr(self, name)), f"{k}.{name}", "entries must be positive")
        check(self.feature_dim > 0, f"{k}.feature_dim", f"must be positive, got {self.feature_dim}")
        check(self.encoder in ENCODERS, f"{k}.encoder", f"must be one of {ENCODERS}, got {self.encoder!r}")
        check(self.precision in PRECISIONS, f"{k}.precision",
              f"must be one of {PRECISIONS}, got {self.precision!r}")
        check(self.n_critics in (1, 2), f"{k}.n_critics", f"must be 1 or 2, got {self.n_critics}")
        for name in ("actor_lr", "critic_lr"):
            check(getattr(self, name) > 0, f"{k}.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.weight_decay >= 0, f"{k}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(0 <= self.gamma <= 1, f"{k}.gamma", f"must be in [0, 1], got {self.gamma}")
        check(0 < self.tau <= 1, f"{k}.tau", f"must be in (0, 1], got {self.tau}")
        check(self.n_step >= 1, f"{k}.n_step", f"must be >= 1, got {self.n_step}")
        check(self.saturation_penalty >= 0, f"{k}.saturation_penalty",
              f"must be >= 0, got {self.saturation_penalty}")
        check(self.smoothness_penalty >= 0, f"{k}.smoothness_penalty",
              f"must be >= 0, got {self.smoothness_penalty}")
        check(self.smoothness_pair in SMOOTHNESS_PAIRS, f"{k}.smoothness_pair",
              f"must be one of {SMOOTHNESS_PAIRS}, got {self.smoothness_pair!r}")
        check(self.aux_weight >= 0, f"{k}.aux_weight", f"must be >= 0, got {self.aux_weight}")
        check(self.augmentation in AUGMENTATIONS, f"{k}.augmentation",
              f"must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        check(0 <= self.policy_average < 1, f"{k}.policy_average",
              f"must be in [0, 1), got {self.policy_average}")
        check(self.shift_pad >= 1, f"{k}.shift_pad", f"must be >= 1, got {self.shift_pad}")
        for name in ("policy_noise", "noise_clip"):
            check(getattr(self, name) >= 0, f"{k}.{name}", f"must be >= 0, got {getattr(self, name)}")
        check(self.policy_delay >= 1, f"{k}.policy_delay", f"must be >= 1, got {self.policy_delay}")
        check(self.batch_size >= 1, f"{k}.batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass
class ClassicalConfig:
    """PID speed control plus Pure Pursuit steering on the route waypoints of the observation vector."""

    _target_: str = "av_td3.agents.classical.ClassicalAgent"
    target_speed: float = 8.33  # m/s, the reward's target speed
    kp: float = 0.5
    ki: float = 0.05
    kd: float = 0.02
    lookahead: float = 6.0  # m, Pure Pursuit look-ahead distance
    wheelbase: float = 2.9  # m (Tesla Model 3: 2.875)
    # s between the controller's actions, for the PID's integral and derivative; null = derived: the env's
    # step (env.simulation_frequency / env.fixed_delta_seconds) x trainer.action_repeat. A value that
    # differs from that is an error.
    dt: Optional[float] = None
    # Car following: an IDM speed law (Treiber et al. 2000) on the gap and closing speed to the vehicle
    # ahead that the observation vector carries with env.observe_obstacle=true; the pedal is the smaller
    # of the PID's and IDM's. false = the reference's controller, blind to other vehicles.
    car_following: bool = False
    follow_time_headway: float = 1.5  # s, IDM's T
    follow_min_gap: float = 2.0  # m bumper to bumper at a standstill, IDM's s0
    follow_max_acceleration: float = 3.0  # m/s^2, IDM's a (the embedded ego's full throttle)
    follow_comfortable_deceleration: float = 3.0  # m/s^2, IDM's b
    follow_full_brake: float = 8.0  # m/s^2 that a full brake pedal gives (the embedded ego's)

    def __post_init__(self) -> None:
        for name in ("target_speed", "lookahead", "wheelbase", "follow_time_headway", "follow_max_acceleration",
                     "follow_comfortable_deceleration", "follow_full_brake"):
            check(getattr(self, name) > 0, f"agent.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.dt is None or self.dt > 0, "agent.dt", f"must be positive (or null: derived), got {self.dt}")
        for name in ("kp", "ki", "kd"):
            check(getattr(self, name) >= 0, f"agent.{name}", f"must be >= 0, got {getattr(self, name)}")
