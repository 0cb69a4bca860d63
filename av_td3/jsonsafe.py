"""JSON from results and reports: a non-finite float (NaN, inf) is not JSON, so it is written as null
(results.json: an undefined metric) or, where which one it was matters (validate's findings: a NaN loss
against an infinite one), as its name."""

from __future__ import annotations

import math


def jsonable(o, nonfinite: str = "null"):
    """``o`` with every non-finite float, in nested dicts, lists and tuples, replaced: by None
    (``nonfinite="null"``) or by its text, "nan" / "inf" / "-inf" (``nonfinite="text"``)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None if nonfinite == "null" else str(o)
    if isinstance(o, dict):
        return {k: jsonable(v, nonfinite) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v, nonfinite) for v in o]
    return o
