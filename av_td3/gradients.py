"""Gradient norms measured exactly as ``torch.nn.utils.clip_grad_norm_`` sees them, and clipping.

For a network split into named parts (cnn, mlp), ``GradientClipper()``:
1. measures each part's global norm BEFORE clipping with ``torch.nn.utils.get_total_norm`` (the function
   ``clip_grad_norm_`` itself calls) and combines the parts into the whole-network norm
   (``||(n_cnn, n_mlp)||_p``: sqrt of the sum of squares for L2, the max for inf), which equals
   ``clip_grad_norm_``'s return value up to float rounding;
2. clips as configured (``none``; ``norm``: per-part limits first, then the whole-network limit, each
   with ``clip_grads_with_norm_``, i.e. PyTorch's own coefficient min(1, max_norm / (norm + 1e-6));
   ``value``: ``clip_grad_value_``);
3. measures the same AFTER, on the clipped gradients (not derived from the coefficient), so a broken
   clip shows.
Everything stays on the device: no ``.item()``, no host sync. The caller fetches the returned tensors
once per logging interval. The reference summed per-parameter norms (1.6-2x too large); this module is
the fix, by construction.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import clip_grad_value_, clip_grads_with_norm_, get_total_norm

from av_td3.config.clipping import NetClipConfig


def _grads(params: list[nn.Parameter]) -> list[torch.Tensor]:
    # Parameters without a gradient are skipped, as clip_grad_norm_ does.
    return [p.grad for p in params if p.grad is not None]


class GradientClipper:
    """Measure, clip, measure again, for one network's parameter parts."""

    def __init__(self, parts: dict[str, list[nn.Parameter]], cfg: NetClipConfig):
        self.parts = parts
        self.cfg = cfg
        self.norm_type = float(cfg.norm_type)
        device = next(p.device for ps in parts.values() for p in ps)
        self._zero = torch.zeros((), device=device)
        self._one = torch.ones((), device=device)

    def part_norms(self) -> dict[str, torch.Tensor]:
        norms = {}
        for name, params in self.parts.items():
            grads = _grads(params)
            norms[name] = get_total_norm(grads, self.norm_type) if grads else self._zero
        return norms

    def combine(self, part_norms: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.linalg.vector_norm(torch.stack(list(part_norms.values())), self.norm_type)

    def __call__(self) -> dict[str, torch.Tensor]:
        """Clip the current gradients in place; return 0-dim device tensors: ``before``, ``after``,
        ``before_<part>``, ``after_<part>``, ``clip_ratio`` (after / before), ``clipped`` (0/1) and
        ``finite`` (bool: every gradient finite)."""
        cfg = self.cfg
        before_parts = self.part_norms()
        before = self.combine(before_parts)
        clipped = self._zero

        if cfg.mode == "norm":
            coefs = []
            norms = dict(before_parts)
            for name, params in self.parts.items():
                limit = getattr(cfg, f"{name}_max_norm", None)
                if limit is not None and _grads(params):
                    clip_grads_with_norm_(params, limit, norms[name])
                    coef = torch.clamp(limit / (norms[name] + 1e-6), max=1.0)
                    norms[name] = norms[name] * coef
                    coefs.append(coef)
            if cfg.max_norm is not None:
                total = self.combine(norms)
                clip_grads_with_norm_([p for ps in self.parts.values() for p in ps], cfg.max_norm, total)
                coefs.append(torch.clamp(cfg.max_norm / (total + 1e-6), max=1.0))
            clipped = (torch.stack(coefs) < 1.0).any().float() if coefs else self._zero
        elif cfg.mode == "value":
            clip_grad_value_([p for ps in self.parts.values() for p in ps], cfg.clip_value)

        if cfg.mode == "none":
            after_parts, after = before_parts, before
        else:
            after_parts = self.part_norms()
            after = self.combine(after_parts)
            if cfg.mode == "value":
                # Clamping changes the norm iff some element exceeded clip_value.
                clipped = (after < before).float()

        stats = {"before": before, "after": after, "clipped": clipped, "finite": torch.isfinite(before),
                 "clip_ratio": torch.where(before > 0, after / before, self._one)}
        for name in self.parts:
            stats[f"before_{name}"] = before_parts[name]
            stats[f"after_{name}"] = after_parts[name]
        return stats


class GuardedStep:
    """One network's optimizer step: clip (``GradientClipper``), skip the step when the loss or any
    gradient is non-finite, and keep health counters. All on the device, without a host sync: the skip
    uses fused Adam's ``found_inf`` (the mechanism ``torch.amp.GradScaler`` uses), which leaves
    parameters and optimizer state untouched.

    Every ``measure_every``-th step it also measures what the step did to the weights: the relative
    update ||theta_after - theta_before|| / ||theta_before|| of the whole network (``update_ratio``) and
    of each part (``update_ratio_<part>``), the frozen-or-not signal that gradient norms cannot give
    (Adam rescales gradients; clipping and weight decay act in between). Measuring costs a copy and
    three norms of the parameters, so it runs at the logging interval, not on every step."""

    def __init__(self, parts: dict[str, list[nn.Parameter]], cfg: NetClipConfig,
                 optimizer: torch.optim.Optimizer, measure_every: int = 1):
        self.clipper = GradientClipper(parts, cfg)
        self.optimizer = optimizer
        self.measure_every = measure_every
        self.steps = 0
        self._before: dict[str, list[torch.Tensor]] | None = None  # allocated at the first measurement
        z = self.clipper._zero
        self.nonfinite_total = z.clone()  # updates skipped so far
        self.nonfinite_run = z.clone()  # skipped in a row, up to now
        self.nonfinite_max_run = z.clone()  # longest such run since the last fetch
        # Alerts compare the CNN part's BEFORE norm with each threshold; count and peak per level.
        self.alert_thresholds = {level: cfg.alert_threshold(level) for level in ("warning", "critical")}
        self.alert_count = {lvl: z.clone() for lvl, t in self.alert_thresholds.items() if t is not None}
        self.alert_peak = {lvl: z.clone() for lvl in self.alert_count}

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part (cnn, mlp) of the network this step updates."""
        return {part: sum(p.numel() for p in ps) for part, ps in self.clipper.parts.items()}

    def __call__(self, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = self.clipper()
        finite = stats["finite"] & torch.isfinite(loss.detach())
        stats["finite"] = finite
        skipped = (~finite).float()
        self.optimizer.grad_scale, self.optimizer.found_inf = None, skipped
        self.steps += 1
        measure = self.steps % self.measure_every == 0
        if measure:
            weight_norms = self._snapshot()
        self.optimizer.step()
        if measure:
            stats.update(self._update_ratios(weight_norms))
        self.nonfinite_total += skipped
        self.nonfinite_run = (self.nonfinite_run + 1) * skipped
        self.nonfinite_max_run = torch.maximum(self.nonfinite_max_run, self.nonfinite_run)
        for level, count in self.alert_count.items():
            value = stats["before_cnn"]
            fired = value > self.alert_thresholds[level]
            count += fired
            self.alert_peak[level] = torch.where(fired, torch.maximum(self.alert_peak[level], value),
                                                 self.alert_peak[level])
        return stats

    @torch.no_grad()
    def _snapshot(self) -> dict[str, torch.Tensor]:
        """Copy the parameters before the step; return each part's weight norm."""
        parts = {k: v for k, v in self.clipper.parts.items() if v}
        if self._before is None:
            self._before = {k: [torch.empty_like(p) for p in ps] for k, ps in parts.items()}
        norms = {}
        for name, params in parts.items():
            torch._foreach_copy_(self._before[name], [p.detach() for p in params])
            norms[name] = get_total_norm(self._before[name], 2.0)
        return norms

    @torch.no_grad()
    def _update_ratios(self, weight_norms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        moves = {}
        for name, before in self._before.items():
            torch._foreach_sub_(before, [p.detach() for p in self.clipper.parts[name]])  # = -(step)
            moves[name] = get_total_norm(before, 2.0)
        out = {f"update_ratio_{k}": moves[k] / weight_norms[k].clamp_min(1e-12) for k in moves}
        for part in self.clipper.parts:  # a part without parameters (the shared option's actor CNN)
            out.setdefault(f"update_ratio_{part}", self.clipper._zero)
        total_move = torch.linalg.vector_norm(torch.stack(list(moves.values())))
        total_weight = torch.linalg.vector_norm(torch.stack(list(weight_norms.values())))
        out["update_ratio"] = total_move / total_weight.clamp_min(1e-12)
        return out

    def health(self) -> dict[str, torch.Tensor]:
        """Device tensors for the logger to fetch with everything else in its one sync."""
        out = {"nonfinite_total": self.nonfinite_total, "nonfinite_max_run": self.nonfinite_max_run}
        for level in self.alert_count:
            out[f"alert_{level}_count"] = self.alert_count[level]
            out[f"alert_{level}_peak"] = self.alert_peak[level]
        return out

    def reset_interval(self) -> None:
        """Start a new logging interval: peaks and the longest run are per interval."""
        self.nonfinite_max_run = self.nonfinite_run.clone()
        for level in self.alert_peak:
            self.alert_peak[level] = torch.zeros_like(self.alert_peak[level])

    def state_dict(self) -> dict:
        return {"nonfinite_total": self.nonfinite_total, "nonfinite_run": self.nonfinite_run,
                "alert_count": self.alert_count, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state.get("steps", 0))  # the measurement schedule continues where it was
        self.nonfinite_total = state["nonfinite_total"].to(self.nonfinite_total.device)
        self.nonfinite_run = state["nonfinite_run"].to(self.nonfinite_run.device)
        self.nonfinite_max_run = self.nonfinite_run.clone()
        for level, count in state["alert_count"].items():
            if level in self.alert_count:
                self.alert_count[level] = count.to(self.nonfinite_total.device)
