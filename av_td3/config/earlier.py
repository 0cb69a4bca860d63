"""What a run saved before a setting existed ran with, where the setting's default does not reproduce it.

Settings are added with a default that does what came before, so a run whose saved config lacks one ran
with its default. The exceptions are listed here, each with the value such a run ran with and a key every
config the setting belongs to has (a run of another env lacks the setting for a different reason).
``av-td3 evaluate`` (``load_run_config``) and ``compare`` (``RunDir.flat_config``) read them.
"""

from __future__ import annotations

from typing import Any

EARLIER_VALUES: dict[str, tuple[Any, str]] = {
    # Lane invasions were decided on the straight-lane box before the footprint's outline was the default.
    "env.marking_geometry": ("lane_frame", "env.camera"),
}


def earlier_values(has_key) -> dict[str, Any]:
    """{dotted key: the value it ran with} for the settings of EARLIER_VALUES that a saved config lacks;
    ``has_key(dotted)`` says whether the saved config has a key."""
    return {key: value for key, (value, marker) in EARLIER_VALUES.items() if not has_key(key) and has_key(marker)}
