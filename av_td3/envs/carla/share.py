"""Envs of one process that use one CARLA server (a job's train and eval env).

They share the world, so:
- the world settings found before the first of them changed anything are restored when the last one
  closes (restoring them when the first closes would leave the other ticking an asynchronous world);
- one drives at a time: when an env resets or steps while another one acted last, the other is
  suspended (its ego parked out of the way, its NPCs removed) so the driving env sees only its own
  scenario, and it is resumed when it acts again. Each keeps its own Traffic Manager port.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

_SHARES: dict[tuple[str, int], ServerShare] = {}
_LOCK = threading.Lock()


@dataclass
class ServerShare:
    key: tuple[str, int]
    original_settings: Any  # carla.WorldSettings as found
    users: set[int] = field(default_factory=set)  # id() of the envs using it
    active: weakref.ref | None = None  # the env that acted last


def join(key: tuple[str, int], env: object, original_settings: Any) -> ServerShare:
    """Register ``env`` on the server ``key``; the first env's ``original_settings`` are kept."""
    with _LOCK:
        share = _SHARES.get(key)
        if share is None:
            share = _SHARES[key] = ServerShare(key, original_settings)
        share.users.add(id(env))
        return share


def leave(share: ServerShare, env: object) -> bool:
    """Unregister ``env``; True when it was the last user (the caller restores the settings)."""
    with _LOCK:
        share.users.discard(id(env))
        if share.active is not None and share.active() is env:
            share.active = None
        if share.users:
            return False
        if _SHARES.get(share.key) is share:
            del _SHARES[share.key]
        return True


def activate(share: ServerShare, env: object) -> Any:
    """Make ``env`` the one driving; returns the env that acted last if it must now be suspended."""
    with _LOCK:
        previous = share.active() if share.active is not None else None
        share.active = weakref.ref(env)
    return previous if previous is not None and previous is not env else None
