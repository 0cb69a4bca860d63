"""Strict JSON from results: NaN and inf become null (an undefined metric is null, not a JSON error)."""

from __future__ import annotations

import math


def finite_or_none(o):
    """``o`` with every non-finite float, in nested dicts and lists, replaced by None."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: finite_or_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite_or_none(v) for v in o]
    return o
