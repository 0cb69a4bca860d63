"""The ``clipping`` group: how each network's gradients are clipped, and when an alert fires.

Per network a mode: ``none``; ``norm`` (global norm of the whole network <= ``max_norm``, exactly
``torch.nn.utils.clip_grad_norm_``), optionally with per-part limits ``cnn_max_norm`` / ``mlp_max_norm``
applied to each part first; or ``value`` (every element clamped to +-``clip_value``). Alerts compare the
BEFORE-clipping norm of a part with its thresholds (the reference compared AFTER values, so its alerts
could never fire under clipping).
"""

import math
from dataclasses import dataclass, field
from typing import Optional

from av_td3.config.errors import check

MODES = ("none", "norm", "value")


@dataclass
class NetClipConfig:
    mode: str = "none"
    max_norm: Optional[float] = None
    norm_type: float = 2.0
    clip_value: Optional[float] = None
    cnn_max_norm: Optional[float] = None
    mlp_max_norm: Optional[float] = None
    # BEFORE-clipping global norm of the CNN part above which an alert is written. null: derived, the
    # factor below x max_norm under mode=norm (the reference's 1.5x and 2x), never under other modes.
    alert_cnn_warning: Optional[float] = None
    alert_cnn_critical: Optional[float] = None
    alert_warning_factor: Optional[float] = 1.5  # null: no derived warning
    alert_critical_factor: Optional[float] = 2.0

    def check(self, key: str) -> None:
        check(self.mode in MODES, f"{key}.mode", f"must be one of {MODES}, got {self.mode!r}")
        check(self.norm_type > 0 or math.isinf(self.norm_type), f"{key}.norm_type",
              f"must be positive or inf, got {self.norm_type}")
        for name in ("max_norm", "cnn_max_norm", "mlp_max_norm", "clip_value"):
            value = getattr(self, name)
            check(value is None or value > 0, f"{key}.{name}", f"must be positive, got {value}")
        if self.mode == "norm":
            check(any(v is not None for v in (self.max_norm, self.cnn_max_norm, self.mlp_max_norm)),
                  f"{key}.max_norm", "mode=norm needs max_norm (or cnn_max_norm / mlp_max_norm)")
            check(self.clip_value is None, f"{key}.clip_value", "is only read with mode=value")
        elif self.mode == "value":
            check(self.clip_value is not None, f"{key}.clip_value", "mode=value needs clip_value")
            check(all(v is None for v in (self.max_norm, self.cnn_max_norm, self.mlp_max_norm)),
                  f"{key}.max_norm", "norm limits are only read with mode=norm")
        else:
            check(all(v is None for v in (self.max_norm, self.cnn_max_norm, self.mlp_max_norm,
                                          self.clip_value)),
                  f"{key}.mode", "limits are set but mode=none ignores them; set mode=norm or value")
        for name in ("alert_warning_factor", "alert_critical_factor"):
            value = getattr(self, name)
            check(value is None or value > 0, f"{key}.{name}", f"must be positive (or null), got {value}")
        w, c = self.alert_threshold("warning"), self.alert_threshold("critical")
        check(w is None or c is None or w <= c, f"{key}.alert_cnn_warning",
              f"warning threshold {w} must not exceed the critical one {c}")

    def alert_threshold(self, level: str) -> Optional[float]:
        """The CNN norm above which a ``level`` (warning / critical) alert fires; None: never."""
        own = getattr(self, f"alert_cnn_{level}")
        if own is not None:
            return own
        factor = getattr(self, f"alert_{level}_factor")
        if factor is None or self.mode != "norm" or self.max_norm is None:
            return None
        return factor * self.max_norm

    def limit(self, part: Optional[str] = None) -> Optional[float]:
        """The norm limit that bounds the AFTER value of ``part`` (None: the whole network)."""
        if self.mode != "norm":
            return None
        own = self.max_norm if part is None else getattr(self, f"{part}_max_norm")
        if part is not None and self.max_norm is not None:
            # The whole-network limit also bounds each part (a part's norm <= the whole's).
            own = self.max_norm if own is None else min(own, self.max_norm)
        return own


@dataclass
class ClippingConfig:
    actor: NetClipConfig = field(default_factory=NetClipConfig)
    critic: NetClipConfig = field(default_factory=NetClipConfig)

    def __post_init__(self) -> None:
        self.actor.check("clipping.actor")
        self.critic.check("clipping.critic")
