"""A saved composed config against the one a command composes now: both as dotted keys (``flatten_config``),
the settings they hold differently (``changed_settings``: a resume, a reused benchmark job), and what a run
saved before a setting existed ran with, where the setting's default does not reproduce it (``EARLIER_VALUES``).

Settings are added with a default that does what came before, so a run whose saved config lacks one ran
with its default. The exceptions are listed here, each with the value such a run ran with and a key every
config the setting belongs to has (a run of another env lacks the setting for a different reason).
``av-td3 evaluate`` (``load_run_config``) and ``compare`` (``RunDir.flat_config``) read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EARLIER_VALUES: dict[str, tuple[Any, str]] = {
    # Lane invasions were decided on the straight-lane box before the footprint's outline was the default.
    "env.marking_geometry": ("lane_frame", "env.camera"),
}


def earlier_values(has_key) -> dict[str, Any]:
    """{dotted key: the value it ran with} for the settings of EARLIER_VALUES that a saved config lacks;
    ``has_key(dotted)`` says whether the saved config has a key."""
    return {key: value for key, (value, marker) in EARLIER_VALUES.items() if not has_key(key) and has_key(marker)}


def flatten_config(config: dict) -> dict[str, Any]:
    """A composed config (plain nested dicts) as dotted keys -> values, lists as tuples."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = tuple(node) if isinstance(node, list) else node

    walk(config, "")
    return out


def flatten_saved_config(config: dict) -> dict[str, Any]:
    """A saved composed config as dotted keys (``flatten_config``), with the value the run ran with for each
    setting of ``EARLIER_VALUES`` it lacks."""
    flat = flatten_config(config)
    return flat | earlier_values(flat.__contains__)


def changed_settings(then: dict, now: dict, ignore: Iterable[str] = (), now_raw=None) -> dict[str, tuple]:
    """Dotted key -> (value then, value now) for every setting two composed configs (plain nested dicts)
    hold differently, "(absent)" where one lacks it; keys in ``ignore`` are left out. With ``now_raw`` (the
    DictConfig ``now`` was resolved from), a setting ``then`` lacks counts as changed only where ``now``
    holds it otherwise than its default (``schema_default``): the earlier run ran with that default."""
    then, now, skip = flatten_saved_config(then), flatten_config(now), set(ignore)
    changed = {k: (then.get(k, "(absent)"), now.get(k, "(absent)")) for k in sorted(then.keys() | now.keys())
               if k not in skip and then.get(k, "(absent)") != now.get(k, "(absent)")}
    if now_raw is not None:
        changed = {k: v for k, v in changed.items()
                   if not (k not in then and k in now and schema_default(now_raw, k) == now[k])}
    return changed


def schema_default(raw, dotted: str) -> Any:
    """The default of setting ``dotted`` in the composed DictConfig ``raw``: the field default of the
    dataclass that types its parent node. A key no dataclass declares has no default: a sentinel that
    equals nothing."""
    import dataclasses

    from omegaconf import OmegaConf

    parent_key, _, name = dotted.rpartition(".")
    parent = OmegaConf.select(raw, parent_key) if parent_key else raw
    kind = OmegaConf.get_type(parent) if parent is not None else None
    fields = {f.name: f for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else {}
    if name not in fields:
        return object()
    f = fields[name]
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return tuple(default) if isinstance(default, list) else default


def describe_changes(changed: dict[str, tuple]) -> str:
    """``changed_settings``' result in one line: "key: then, now value; ..."."""
    return "; ".join(f"{k}: {then}, now {now}" for k, (then, now) in changed.items())
