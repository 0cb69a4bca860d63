"""The ``exploration`` node: how the trainer explores around the policy, and what the warm-up does
(``av_td3/exploration.py``). The reference: white Gaussian noise of std 0.1, uniform warm-up actions."""

from dataclasses import dataclass
from typing import Optional

from av_td3.config.errors import check

PROCESSES = ("gaussian", "ou", "pink")
WARMUPS = ("uniform", "process")


@dataclass
class ExplorationConfig:
    process: str = "gaussian"  # gaussian (white) | ou (Ornstein-Uhlenbeck) | pink (colored, 1/f^beta)
    std: float = 0.1  # action-noise scale (actions live in [-1, 1])
    # Linear decay from std to final_std over decay_steps env frames (DrQ-v2); null = constant std.
    final_std: Optional[float] = None
    decay_steps: int = 0
    ou_theta: float = 0.15  # OU mean reversion per agent step (correlation over ~1/theta steps)
    pink_beta: float = 1.0  # colored-noise exponent: 0 white, 1 pink, 2 red (Brownian)
    # Warm-up actions (before trainer.learning_starts): uniform in the action space (the reference), or
    # clip(warmup_std * noise) from the process above.
    warmup: str = "uniform"
    warmup_std: float = 1.0
    # Per action dimension, a factor on the noise (std and warmup_std): for [steer, throttle_brake],
    # [0.2, 1.0] explores the pedal five times as widely as the steering, whose correlated noise would
    # otherwise leave the road within a second. null = 1 for every dimension.
    action_scale: Optional[list[float]] = None

    def __post_init__(self) -> None:
        k = "exploration"
        check(self.process in PROCESSES, f"{k}.process", f"must be one of {PROCESSES}, got {self.process!r}")
        check(self.warmup in WARMUPS, f"{k}.warmup", f"must be one of {WARMUPS}, got {self.warmup!r}")
        check(self.std >= 0, f"{k}.std", f"must be >= 0, got {self.std}")
        check(self.final_std is None or self.final_std >= 0, f"{k}.final_std",
              f"must be >= 0, got {self.final_std}")
        check(self.decay_steps >= 0, f"{k}.decay_steps", f"must be >= 0, got {self.decay_steps}")
        check((self.final_std is None) == (self.decay_steps == 0), f"{k}.decay_steps",
              "final_std and decay_steps go together: set both for a decay, neither for a constant std")
        check(0 < self.ou_theta <= 1, f"{k}.ou_theta", f"must be in (0, 1], got {self.ou_theta}")
        check(0 <= self.pink_beta <= 3, f"{k}.pink_beta", f"must be in [0, 3], got {self.pink_beta}")
        check(self.warmup_std > 0, f"{k}.warmup_std", f"must be positive, got {self.warmup_std}")
        check(self.action_scale is None or all(v >= 0 for v in self.action_scale), f"{k}.action_scale",
              f"entries must be >= 0, got {self.action_scale}")
